//! Invariant 6: fencing tokens, as a downstream store that fences by them
//! sees them. It keeps, per partition, the highest token any owner was
//! installed with, and who had it; an install that carries a lower token
//! would be rejected by such a store (the rightful owner locked out), and a
//! new owner with the same token could not be told from the old one.

use std::collections::HashMap;

use crate::Assignment;

/// The highest token seen per partition, and the process it was given to.
#[derive(Default)]
pub(crate) struct Tokens {
    high: HashMap<String, (u64, String)>,
}

impl Tokens {
    /// `owner` installed `assignment`: every token in it must be at least the
    /// highest seen for its partition, and strictly higher when the owner
    /// changed.
    pub fn install(&mut self, owner: &str, assignment: &Assignment) -> Result<(), String> {
        for (partition, token) in assignment.iter() {
            let id = partition.id();
            match self.high.get(id) {
                Some((high, by)) if token < *high => {
                    return Err(format!(
                        "{owner} installed v{} with token {token} for {id}, below the {high} \
                         {by} was given: a fenced downstream would reject the current owner",
                        assignment.version()
                    ));
                }
                Some((high, by)) if token == *high && by != owner => {
                    return Err(format!(
                        "{owner} installed v{} with token {token} for {id}, the token {by} \
                         already holds: a fenced downstream cannot tell the two owners apart",
                        assignment.version()
                    ));
                }
                _ => {}
            }
            self.high.insert(id.to_string(), (token, owner.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Partition;

    fn grant(version: u64, token: u64) -> Assignment {
        Assignment::new(version, 1, None, [(Partition::new("p"), token)])
    }

    #[test]
    fn lower_or_reused_tokens_are_caught() {
        let mut t = Tokens::default();
        t.install("a", &grant(3, 3)).unwrap();
        t.install("a", &grant(4, 3)).unwrap();
        assert!(
            t.install("b", &grant(5, 3)).is_err(),
            "same token, new owner"
        );
        assert!(t.install("b", &grant(5, 2)).is_err(), "lower token");
        t.install("b", &grant(6, 6)).unwrap();
    }
}
