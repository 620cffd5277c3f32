//! A stable radix sort on 64-bit hash-like keys: the large sorts of a
//! placement (partitions and previous owners by hash, the ring by position)
//! are two counting passes over the top bits and a pass finishing the short
//! runs those leave, instead of a comparison sort.

/// Below this length a plain comparison sort is as fast.
const SMALL: usize = 4096;

/// Sorts `v` by `key`, keeping the input order of equal keys. Fast when the
/// top bits of the keys are spread (hashes); correct for any keys.
pub(crate) fn sort_by_u64<T: Copy>(v: &mut [T], key: impl Fn(&T) -> u64) {
    sort_by_u64_in(v, &mut Vec::new(), key, |_| {});
}

/// [`sort_by_u64`], then `ties` on every run of equal keys.
pub(crate) fn sort_by_u64_then<T: Copy>(
    v: &mut [T],
    key: impl Fn(&T) -> u64,
    ties: impl FnMut(&mut [T]),
) {
    sort_by_u64_in(v, &mut Vec::new(), key, ties);
}

/// [`sort_by_u64_then`] with `scratch` as the second buffer: passing the
/// same one to several sorts saves allocating (and faulting in) fresh
/// memory for each.
pub(crate) fn sort_by_u64_in<T: Copy>(
    v: &mut [T],
    scratch: &mut Vec<T>,
    key: impl Fn(&T) -> u64,
    mut ties: impl FnMut(&mut [T]),
) {
    if v.len() < SMALL {
        v.sort_by_key(|x| key(x));
        for_each_tie(v, &key, &mut ties);
        return;
    }
    // About four times as many top-bit values as elements, so that with
    // spread keys most elements are alone with their top bits. Two stable
    // counting passes (lower digit first) order by those bits; each digit
    // has at most 2^12 values, so its counters stay in the first-level cache.
    let bits = (v.len().ilog2() + 2).min(24);
    let low = bits / 2;
    let top = |x: &T| key(x) >> (64 - bits);
    let low_digit = |x: &T| (top(x) & ((1 << low) - 1)) as usize;
    let high_digit = |x: &T| (top(x) >> low) as usize;
    // Both digits counted in one pass.
    let mut next_low = vec![0usize; 1 << low];
    let mut next_high = vec![0usize; 1 << (bits - low)];
    for x in v.iter() {
        next_low[low_digit(x)] += 1;
        next_high[high_digit(x)] += 1;
    }
    starts(&mut next_low);
    starts(&mut next_high);
    scratch.clear();
    scratch.extend_from_slice(v);
    for x in v.iter() {
        let d = low_digit(x);
        scratch[next_low[d]] = *x;
        next_low[d] += 1;
    }
    for x in scratch.iter() {
        let d = high_digit(x);
        v[next_high[d]] = *x;
        next_high[d] += 1;
    }
    // Finish the runs sharing their top bits. Stable, and a comparison sort,
    // so keys that are not spread only cost time.
    let mut i = 0;
    while i < v.len() {
        let t = top(&v[i]);
        let mut j = i + 1;
        while j < v.len() && top(&v[j]) == t {
            j += 1;
        }
        if j - i > 1 {
            let run = &mut v[i..j];
            run.sort_by_key(|x| key(x));
            for_each_tie(run, &key, &mut ties);
        }
        i = j;
    }
}

/// Turns counts into start offsets.
fn starts(counts: &mut [usize]) {
    let mut sum = 0;
    for slot in counts.iter_mut() {
        let count = *slot;
        *slot = sum;
        sum += count;
    }
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

    #[test]
    fn spread_keys_take_the_counting_passes_and_report_every_tie() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        // Spread keys, one in eight repeated from an earlier element.
        let mut keys: Vec<u64> = Vec::new();
        for i in 0..50_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = if i % 8 == 7 {
                keys[(x % i as u64) as usize]
            } else {
                x
            };
            keys.push(k);
        }
        let mut v: Vec<(u64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, i as u32))
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(|p| p.0);
        let mut tied = 0usize;
        sort_by_u64_then(
            &mut v,
            |p| p.0,
            |run| {
                assert!(run.windows(2).all(|w| w[0].0 == w[1].0));
                tied += run.len();
            },
        );
        assert_eq!(v, expected);
        let want_tied: usize = expected
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|run| run.len() > 1)
            .map(<[_]>::len)
            .sum();
        assert!(want_tied > 1000, "the input must have ties");
        assert_eq!(tied, want_tied);
    }
}
