//! A small flag parser: `--flag VALUE`, `--switch`, and positional words.

use std::collections::{BTreeMap, BTreeSet};

/// Flags that take a value, shared by every inspection command.
pub const COMMON_VALUES: &[&str] = &[
    "--server",
    "--group",
    "--user",
    "--password",
    "--token",
    "--creds",
    "--nkey",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
];

/// Parsed command-line arguments.
#[derive(Debug, Default)]
pub struct Args {
    /// Every value of each flag, in order (a flag may be repeated).
    values: BTreeMap<String, Vec<String>>,
    switches: BTreeSet<String>,
    /// Words that are not flags, in order.
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `raw`; `values` and `switches` list the accepted flags besides
    /// [`COMMON_VALUES`].
    pub fn parse(raw: &[String], values: &[&str], switches: &[&str]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut it = raw.iter();
        while let Some(word) = it.next() {
            let w = word.as_str();
            if COMMON_VALUES.contains(&w) || values.contains(&w) {
                let v = it.next().ok_or_else(|| format!("{w} needs a value"))?;
                args.values
                    .entry(w.to_string())
                    .or_default()
                    .push(v.clone());
            } else if switches.contains(&w) {
                args.switches.insert(w.to_string());
            } else if w.starts_with("--") {
                return Err(format!("unknown flag {w}"));
            } else {
                args.positional.push(word.clone());
            }
        }
        Ok(args)
    }

    /// The value of `flag`, if given (the last one when repeated).
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .get(flag)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value given for `flag`, in order.
    pub fn values(&self, flag: &str) -> &[String] {
        self.values.get(flag).map_or(&[], Vec::as_slice)
    }

    /// Whether `switch` was given.
    pub fn has(&self, switch: &str) -> bool {
        self.switches.contains(switch)
    }

    /// The NATS server URL (default `127.0.0.1:4222`).
    pub fn server(&self) -> &str {
        self.value("--server").unwrap_or("127.0.0.1:4222")
    }

    /// The group, which every inspection command requires.
    pub fn group(&self) -> Result<&str, String> {
        self.value("--group")
            .ok_or_else(|| "--group is required".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_switches_and_words() {
        let a = Args::parse(&words("add --group g p1 --json p2"), &[], &["--json"]).unwrap();
        assert_eq!(a.group().unwrap(), "g");
        assert!(a.has("--json"));
        assert_eq!(a.positional, words("add p1 p2"));
        assert_eq!(a.server(), "127.0.0.1:4222");
        assert!(Args::parse(&words("--group"), &[], &[]).is_err());
        assert!(Args::parse(&words("--nope"), &[], &[]).is_err());
        let a = Args::parse(&words("--set a=1 --set b=2"), &["--set"], &[]).unwrap();
        assert_eq!(a.values("--set"), words("a=1 b=2"));
        assert_eq!(a.value("--set"), Some("b=2"));
        assert!(a.values("--other").is_empty());
    }
}
