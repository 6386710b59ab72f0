"""Distortion metrics: the per-image functions (:mod:`.functional`, pure) and the metric table
(:mod:`.table`) that rows, the store, rd, compare and the report iterate."""

from qvrf_bench.metrics.functional import (
    MS_SSIM_MIN_SIDE,
    MS_SSIM_WIN_SIZE,
    bpp,
    ms_ssim_db,
    ms_ssim_rgb,
    ms_ssim_y,
    mse_rgb,
    psnr_from_mse,
    psnr_rgb,
    psnr_y,
    psnr_ycbcr,
    psnr_yuv,
    ycbcr_bt709,
)
from qvrf_bench.metrics.table import (
    Derived,
    Metric,
    all_metrics,
    default_metrics,
    get_metric,
    metric_columns,
    metric_names,
    parse_metrics,
    quality_axes,
    register_metric,
    unregister_metric,
)

__all__ = [
    "MS_SSIM_MIN_SIDE", "MS_SSIM_WIN_SIZE", "Derived", "Metric", "all_metrics", "bpp", "default_metrics",
    "get_metric", "metric_columns", "metric_names", "ms_ssim_db", "ms_ssim_rgb", "ms_ssim_y", "mse_rgb", "parse_metrics",
    "psnr_from_mse", "psnr_rgb", "quality_axes", "psnr_y", "psnr_ycbcr", "psnr_yuv", "register_metric", "unregister_metric",
    "ycbcr_bt709",
]  # fmt: skip
