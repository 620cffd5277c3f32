//! A stable LSD radix sort on 64-bit keys: the large sorts of a placement
//! (partitions and previous owners by hash, the ring by position) take a
//! few sequential passes instead of `N log N` comparisons.

/// Below this length a comparison sort is faster than four radix passes.
const SMALL: usize = 4096;

/// Sorts `v` by `key`, keeping the input order of equal keys.
pub(crate) fn sort_by_u64<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if v.len() < SMALL {
        v.sort_by_key(|x| key(x));
        return;
    }
    let mut from = std::mem::take(v);
    let mut to = from.clone();
    let mut counts = vec![0usize; 1 << 16];
    for pass in 0..4 {
        let shift = pass * 16;
        counts.iter_mut().for_each(|c| *c = 0);
        for x in &from {
            counts[((key(x) >> shift) & 0xffff) as usize] += 1;
        }
        // A digit every element shares would only copy: skip the pass.
        if counts.iter().any(|&c| c == from.len()) {
            continue;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for x in &from {
            let d = ((key(x) >> shift) & 0xffff) as usize;
            to[counts[d]] = *x;
            counts[d] += 1;
        }
        std::mem::swap(&mut from, &mut to);
    }
    *v = from;
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
