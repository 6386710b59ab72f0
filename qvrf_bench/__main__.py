import sys

from qvrf_bench.cli import main

sys.exit(main())
