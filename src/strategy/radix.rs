//! A stable bucket sort on 64-bit hash-like keys: the large sorts of a
//! placement (partitions and previous owners by hash, the ring by position)
//! scatter once by the top bits, then sort small, cache-resident buckets.

/// Below this length a plain comparison sort is as fast.
const SMALL: usize = 4096;

/// Sorts `v` by `key`, keeping the input order of equal keys. Fast when the
/// top bits of the keys are spread (hashes); correct for any keys.
pub(crate) fn sort_by_u64<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if v.len() < SMALL {
        v.sort_by_key(|x| key(x));
        return;
    }
    // About 256 elements per bucket, between 2^8 and 2^16 buckets.
    let bits = (v.len() / 256).ilog2().clamp(8, 16);
    let shift = 64 - bits;
    let mut start = vec![0usize; (1 << bits) + 1];
    for x in v.iter() {
        start[(key(x) >> shift) as usize + 1] += 1;
    }
    for b in 0..(1 << bits) {
        start[b + 1] += start[b];
    }
    let mut next = start.clone();
    let mut out = v.clone();
    for x in v.iter() {
        let b = (key(x) >> shift) as usize;
        out[next[b]] = *x;
        next[b] += 1;
    }
    for b in 0..(1 << bits) {
        // Stable, so equal keys keep their input order.
        out[start[b]..start[b + 1]].sort_by_key(|x| key(x));
    }
    *v = out;
}

/// Calls `f` on every run of two or more consecutive elements with equal
/// keys, so callers can order ties by a secondary key.
pub(crate) fn for_each_tie<T>(v: &mut [T], key: impl Fn(&T) -> u64, mut f: impl FnMut(&mut [T])) {
    let mut start = 0;
    while start < v.len() {
        let k = key(&v[start]);
        let mut end = start + 1;
        while end < v.len() && key(&v[end]) == k {
            end += 1;
        }
        if end - start > 1 {
            f(&mut v[start..end]);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_a_stable_sort() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v: Vec<(u64, u32)> = (0..20_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Few distinct high bits and repeats, to exercise ties.
                ((x % 5000) << 40 | (x % 7), i)
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(|p| p.0);
        sort_by_u64(&mut v, |p| p.0);
        assert_eq!(v, expected);
    }
}
