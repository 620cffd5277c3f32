//! Skipping full workers on the ring in amortised constant time.

/// Finds the next open ring position at or after a given one, wrapping
/// around. `next[i] == i` marks an open position; closed positions point
/// forward, and `next[len] == len` is the wrap-around sentinel.
pub(crate) struct SkipList {
    next: Vec<u32>,
}

impl SkipList {
    /// A list over `len` positions in which position `i` is open when
    /// `open(i)`: one pass, instead of opening all and closing most.
    pub(crate) fn with_open(len: usize, open: impl Fn(usize) -> bool) -> Self {
        let mut list = SkipList { next: Vec::new() };
        list.reset(len, open);
        list
    }

    /// Makes this list [`with_open`](Self::with_open)`(len, open)`, reusing
    /// its memory (a fresh one per pass costs page faults at a million).
    pub(crate) fn reset(&mut self, len: usize, open: impl Fn(usize) -> bool) {
        self.next.clear();
        self.next
            .extend((0..len).map(|i| if open(i) { i as u32 } else { i as u32 + 1 }));
        self.next.push(len as u32);
    }

    pub(crate) fn close(&mut self, positions: &[u32]) {
        for &p in positions {
            self.next[p as usize] = p + 1;
        }
    }

    /// Callers guarantee at least one position is open.
    pub(crate) fn next_open(&mut self, from: usize) -> usize {
        let end = self.next.len() - 1;
        let found = self.find(from);
        if found == end {
            self.find(0)
        } else {
            found
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        // Path halving keeps chains of closed positions short.
        while self.next[i] as usize != i {
            let grand = self.next[self.next[i] as usize];
            self.next[i] = grand;
            i = grand as usize;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_closed_positions_and_wraps() {
        let mut s = SkipList::with_open(5, |_| true);
        assert_eq!(s.next_open(2), 2);
        s.close(&[2, 3]);
        assert_eq!(s.next_open(2), 4);
        s.close(&[4]);
        assert_eq!(s.next_open(2), 0);
        s.close(&[0]);
        assert_eq!(s.next_open(3), 1);
        assert_eq!(s.next_open(1), 1);
        // Built with only 1 and 4 open: the same answers as closing the rest.
        let mut t = SkipList::with_open(5, |i| i == 1 || i == 4);
        assert_eq!(t.next_open(2), 4);
        assert_eq!(t.next_open(0), 1);
        t.close(&[4]);
        assert_eq!(t.next_open(2), 1);
    }
}
