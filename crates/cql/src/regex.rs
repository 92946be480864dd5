//! Regular expressions for Matches / ReplaceMatches / SplitOnMatches.

fn compile(p: &str) -> Option<regex::Regex> {
    regex::Regex::new(p).ok()
}

pub fn full_match(p: &str, s: &str) -> Option<bool> {
    let re = compile(&format!("^(?:{p})$"))?;
    Some(re.is_match(s))
}

pub fn replace_all(p: &str, s: &str, r: &str) -> Option<String> {
    let re = compile(p)?;
    // Java-style replacement: `\$` is a literal dollar, `$n` a group
    let r = r.replace("\\$", "$$");
    Some(re.replace_all(s, r.as_str()).into_owned())
}

pub fn split(p: &str, s: &str) -> Option<Vec<String>> {
    let re = compile(p)?;
    Some(re.split(s).map(|x| x.to_string()).collect())
}
