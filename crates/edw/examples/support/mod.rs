//! Command-line options shared by the examples (`--name VALUE` and `--flag`).
#![allow(dead_code)] // each example uses part of it

pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    /// The value after `name` (e.g. `--db`).
    pub fn get(&self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).cloned()
    }

    /// A numeric option, or `default`; exits with a message when it is not a number.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("{name} takes a number");
                std::process::exit(2)
            }),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}
