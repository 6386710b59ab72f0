/* CompressAI's rANS coder (BufferedRansEncoder and RansDecoder::decode_stream,
 * compressai/cpp_exts/rans/rans_interface.cpp, on ryg_rans's rans64.h, CC0) over arrays: the same
 * arithmetic, so the same bytes from the same symbols and the same symbols from the same bytes.
 * CompressAI's pybind interface converts the symbols, the indexes and every CDF row from Python
 * lists on every call; the sweep's coding and decode check spent most of their entropy-coding time
 * there (the autoregressive decoder calls it once per wavefront group and stream).
 *
 * Unlike the original, every read and write is bounds-checked: past a stream's end the decoder reads
 * zeros (what CompressAI's decoder reads from the zero padding the callers give it), so any bytes
 * decode as they decode there; a table index outside the table is an error. Built on first use by qvrf_bench/bitstream/rans.py. */

#include <stdint.h>

#define PRECISION 16u   /* CompressAI's `precision` */
#define BYPASS_BITS 4u  /* CompressAI's `bypass_precision` */
#define MAX_BYPASS ((1u << BYPASS_BITS) - 1u)
#define RANS64_L (1ull << 31)

enum { OK = 0, ERR_INDEX = 2, ERR_ROOM = 4 };

/* A stream's word at p: past its end, zeros. CompressAI's decoder reads without bounds checks, so
 * the callers give it each string followed by zeros (models/latent.py padded()); reading zeros past
 * the end here gives every byte string the symbols that decoder gives it, and never reads outside
 * the buffer. */
static inline uint32_t word(const uint32_t *words, int64_t p, int64_t end) { return p < end ? words[p] : 0u; }

/* Rans64DecInit: the state is the stream's first two 32-bit words. */
int rans_init(int n_streams, const uint32_t *words, const int64_t *pos, const int64_t *end,
              uint64_t *state, int64_t *next) {
    for (int b = 0; b < n_streams; ++b) {
        state[b] = (uint64_t)word(words, pos[b], end[b]) | ((uint64_t)word(words, pos[b] + 1, end[b]) << 32);
        next[b] = pos[b] + 2;
    }
    return OK;
}

/* Rans64DecGetBits (rans_interface.cpp): n low bits of the state, then renormalise. */
static inline void get_bits(uint64_t *x, const uint32_t *words, int64_t *p, int64_t end, uint32_t n,
                            uint32_t *val) {
    uint64_t s = *x;
    *val = (uint32_t)(s & ((1u << n) - 1u));
    s >>= n;
    if (s < RANS64_L) s = (s << 32) | word(words, (*p)++, end);
    *x = s;
}

/* Decode n symbols from each of n_streams streams. indexes and out are [n_streams, n] (C order);
 * cdf is [k, cdf_stride] (each row's first cdf_len[i] entries used, as CompressAI's quantized_cdf).
 * Returns 0, or an error code with *failed set to the stream that failed. */
int rans_decode(int n_streams, const uint32_t *words, const int64_t *end, uint64_t *state, int64_t *next,
                int64_t n, const int32_t *indexes, const int32_t *cdf, int64_t cdf_stride,
                const int32_t *cdf_len, const int32_t *offsets, int32_t k, int32_t *out, int32_t *failed) {
    for (int b = 0; b < n_streams; ++b) {
        uint64_t x = state[b];
        int64_t p = next[b];
        const int64_t e = end[b];
        const int32_t *idx = indexes + (int64_t)b * n;
        int32_t *o = out + (int64_t)b * n;
        int err = OK;
        for (int64_t i = 0; i < n && err == OK; ++i) {
            const int32_t c = idx[i];
            if (c < 0 || c >= k || cdf_len[c] < 2 || cdf_len[c] > cdf_stride) { err = ERR_INDEX; break; }
            const int32_t *row = cdf + (int64_t)c * cdf_stride;
            const int32_t size = cdf_len[c];
            const int32_t max_value = size - 2;
            const uint32_t cum = (uint32_t)(x & ((1u << PRECISION) - 1u));
            /* std::find_if(cdf, cdf + size, v > cum) - 1, as CompressAI */
            int32_t s = 0;
            while (s + 1 < size && (uint32_t)row[s + 1] <= cum) ++s;
            if (s + 1 >= size) { err = ERR_INDEX; break; } /* cum past the row's total: not a CDF */
            const uint32_t start = (uint32_t)row[s], freq = (uint32_t)(row[s + 1] - row[s]);
            /* Rans64DecAdvance */
            x = (uint64_t)freq * (x >> PRECISION) + (x & ((1ull << PRECISION) - 1u)) - start;
            if (x < RANS64_L) x = (x << 32) | word(words, p++, e);
            int32_t value = s;
            if (value == max_value) { /* bypass mode: the value in 4-bit groups */
                uint32_t v;
                get_bits(&x, words, &p, e, BYPASS_BITS, &v);
                uint32_t n_bypass = v;
                while (v == MAX_BYPASS) {
                    get_bits(&x, words, &p, e, BYPASS_BITS, &v);
                    n_bypass += v;
                }
                /* An encoder writes at most 8 groups; a damaged string may ask for more: they are read
                 * as CompressAI reads them, and its int32 shift by j * 4 >= 32 (undefined in C++) is
                 * taken as x86's, modulo 32. */
                uint32_t raw = 0;
                for (uint32_t j = 0; j < n_bypass; ++j) {
                    get_bits(&x, words, &p, e, BYPASS_BITS, &v);
                    raw |= v << ((j * BYPASS_BITS) & 31u);
                }
                value = (int32_t)raw >> 1; /* CompressAI's raw_val is an int32: an arithmetic shift */
                if (raw & 1u) value = -value - 1;
                else value += max_value;
            }
            o[i] = value + offsets[c];
        }
        if (err != OK) { *failed = b; return err; }
        state[b] = x;
        next[b] = p;
    }
    return OK;
}

/* Rans64EncPut with CompressAI's precision; the output grows downwards from *p. */
static inline int put(uint64_t *x, uint32_t *words, int64_t *p, uint32_t start, uint32_t freq, uint32_t bits) {
    uint64_t s = *x;
    const uint64_t x_max = ((RANS64_L >> bits) << 32) * freq;
    if (s >= x_max) {
        if (*p <= 0) return ERR_ROOM;
        words[--(*p)] = (uint32_t)s;
        s >>= 32;
    }
    *x = ((s / freq) << bits) + (s % freq) + start;
    return OK;
}

/* Rans64EncPutBits (rans_interface.cpp): val in n bits, as a symbol of frequency 2^(16 - n). */
static inline int put_bits(uint64_t *x, uint32_t *words, int64_t *p, uint32_t val, uint32_t n) {
    uint64_t s = *x;
    const uint32_t freq = 1u << (16 - n);
    const uint64_t x_max = ((RANS64_L >> 16) << 32) * freq;
    if (s >= x_max) {
        if (*p <= 0) return ERR_ROOM;
        words[--(*p)] = (uint32_t)s;
        s >>= 32;
    }
    *x = (s << n) | val;
    return OK;
}

/* One stream: BufferedRansEncoder::encode_with_indexes then flush(). flush() codes the buffered
 * (start, range, bypass) symbols last to first; here each symbol's parts are coded in reverse as the
 * loop goes backwards, which is the same sequence. The string is words[*first .. capacity). */
int rans_encode(int64_t n, const int32_t *symbols, const int32_t *indexes, const int32_t *cdf, int64_t cdf_stride,
                const int32_t *cdf_len, const int32_t *offsets, int32_t k, uint32_t *words, int64_t capacity,
                int64_t *first, int64_t *failed) {
    uint64_t x = RANS64_L; /* Rans64EncInit */
    int64_t p = capacity;
    for (int64_t i = n - 1; i >= 0; --i) {
        const int32_t c = indexes[i];
        if (c < 0 || c >= k || cdf_len[c] < 2 || cdf_len[c] > cdf_stride) { *failed = i; return ERR_INDEX; }
        const int32_t *row = cdf + (int64_t)c * cdf_stride;
        const int32_t max_value = cdf_len[c] - 2;
        int32_t value = symbols[i] - offsets[c];
        uint32_t raw = 0;
        if (value < 0) {
            raw = (uint32_t)(-2 * value - 1);
            value = max_value;
        } else if (value >= max_value) {
            raw = (uint32_t)(2 * (value - max_value));
            value = max_value;
        }
        if (value == max_value) { /* the bypass parts, pushed after the symbol: coded before it */
            uint32_t n_bypass = 0;
            while (n_bypass < 8 && (raw >> (n_bypass * BYPASS_BITS)) != 0) ++n_bypass;
            for (int32_t j = (int32_t)n_bypass - 1; j >= 0; --j)
                if (put_bits(&x, words, &p, (raw >> (j * BYPASS_BITS)) & MAX_BYPASS, BYPASS_BITS)) goto room;
            /* the count: (n_bypass / 15) codes of 15, then the remainder; pushed in that order */
            if (put_bits(&x, words, &p, n_bypass % MAX_BYPASS, BYPASS_BITS)) goto room;
            for (uint32_t m = n_bypass / MAX_BYPASS; m > 0; --m)
                if (put_bits(&x, words, &p, MAX_BYPASS, BYPASS_BITS)) goto room;
        }
        /* CompressAI stores start and range as uint16 */
        const uint32_t start = (uint16_t)row[value], freq = (uint16_t)(row[value + 1] - row[value]);
        if (freq == 0) { *failed = i; return ERR_INDEX; }
        if (put(&x, words, &p, start, freq, PRECISION)) goto room;
    }
    if (p < 2) goto room; /* Rans64EncFlush */
    p -= 2;
    words[p] = (uint32_t)x;
    words[p + 1] = (uint32_t)(x >> 32);
    *first = p;
    return OK;
room:
    *failed = -1;
    return ERR_ROOM;
}
