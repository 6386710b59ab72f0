/* CompressAI's rANS decoder (RansDecoder::decode_stream, compressai/cpp_exts/rans/rans_interface.cpp,
 * on ryg_rans's rans64.h, CC0), for several streams at once and with the tables passed once as
 * arrays: the same arithmetic, so the same symbols from the same bytes. CompressAI's pybind
 * interface converts every CDF row from Python lists on every call; the autoregressive decoder
 * calls it once per wavefront group and stream, which made that conversion most of its time.
 *
 * Unlike the original, every read is bounds-checked: a truncated or corrupt stream returns an
 * error code instead of reading past its end. Built on first use by qvrf_bench/bitstream/rans.py. */

#include <stdint.h>

#define PRECISION 16u   /* CompressAI's `precision` */
#define BYPASS_BITS 4u  /* CompressAI's `bypass_precision` */
#define MAX_BYPASS ((1u << BYPASS_BITS) - 1u)
#define RANS64_L (1ull << 31)

enum { OK = 0, ERR_SHORT = 1, ERR_INDEX = 2, ERR_BYPASS = 3 };

/* Rans64DecInit: the state is the stream's first two 32-bit words. */
int rans_init(int n_streams, const uint32_t *words, const int64_t *pos, const int64_t *end,
              uint64_t *state, int64_t *next) {
    for (int b = 0; b < n_streams; ++b) {
        if (end[b] - pos[b] < 2) return ERR_SHORT;
        state[b] = (uint64_t)words[pos[b]] | ((uint64_t)words[pos[b] + 1] << 32);
        next[b] = pos[b] + 2;
    }
    return OK;
}

/* Rans64DecGetBits (rans_interface.cpp): n low bits of the state, then renormalise. */
static inline int get_bits(uint64_t *x, const uint32_t *words, int64_t *p, int64_t end, uint32_t n,
                           uint32_t *val) {
    uint64_t s = *x;
    *val = (uint32_t)(s & ((1u << n) - 1u));
    s >>= n;
    if (s < RANS64_L) {
        if (*p >= end) return ERR_SHORT;
        s = (s << 32) | words[(*p)++];
    }
    *x = s;
    return OK;
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
            if (x < RANS64_L) {
                if (p >= e) { err = ERR_SHORT; break; }
                x = (x << 32) | words[p++];
            }
            int32_t value = s;
            if (value == max_value) { /* bypass mode: the value in 4-bit groups */
                uint32_t v;
                if ((err = get_bits(&x, words, &p, e, BYPASS_BITS, &v)) != OK) break;
                uint32_t n_bypass = v;
                while (v == MAX_BYPASS) {
                    if ((err = get_bits(&x, words, &p, e, BYPASS_BITS, &v)) != OK) break;
                    n_bypass += v;
                    if (n_bypass > 8) break; /* more than 32 bits: the encoder never writes that */
                }
                if (err != OK) break;
                if (n_bypass > 8) { err = ERR_BYPASS; break; }
                uint32_t raw = 0;
                for (uint32_t j = 0; j < n_bypass && err == OK; ++j) {
                    err = get_bits(&x, words, &p, e, BYPASS_BITS, &v);
                    raw |= v << (j * BYPASS_BITS);
                }
                if (err != OK) break;
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
