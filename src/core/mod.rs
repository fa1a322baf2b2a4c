//! Pure decisions about mail: no I/O, no clock, no database. Each function
//! takes data and returns data, so each can be tested with an .eml file.

pub mod classify;
pub mod extract;
pub mod html;
pub mod intake;
pub mod large_parts;
pub mod parse;
pub mod policy;
pub mod quote;
pub mod rtf;
pub mod thread;
pub mod tnef;

/// Builds what reading a mail needs (the regexes of `extract` and `quote`)
/// ahead of the first mail, so it is not paid by the first one filed.
pub fn warm_up() {
    extract::warm_up();
    quote::warm_up();
}

/// Checks that a module's `warm_up` names each of its `static NAME:
/// LazyLock<Regex>` (the list is written out; one left off would compile
/// on the first mail again), and that it found more than `at_least`.
#[cfg(test)]
pub(crate) fn assert_warm_up_lists_every_regex(source: &str, at_least: usize) {
    let (code, _) = source.split_once("#[cfg(test)]").unwrap();
    let (_, warm) = code.split_once("pub fn warm_up()").unwrap();
    let statics: Vec<&str> = code
        .lines()
        .filter_map(|l| l.strip_prefix("static "))
        .filter_map(|l| l.split_once(": LazyLock<Regex>"))
        .map(|(name, _)| name)
        .collect();
    assert!(statics.len() > at_least, "found {statics:?}");
    for name in statics {
        assert!(
            warm.contains(&format!("&{name},")),
            "{name} is not warmed up"
        );
    }
}
