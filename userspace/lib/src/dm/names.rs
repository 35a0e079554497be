//! Device and UUID name rules.

use super::{NAME_MAX, UUID_MAX};

/// Checks a device name: 1 to 127 characters from `A-Z a-z 0-9 # + - . : = @ _`, not `.`, `..`
/// or `control` (the names that would clash in `/dev/mapper`). The kernel itself only refuses
/// `/`; the narrower set keeps names usable as paths and in shell commands without quoting,
/// the same set libdevmapper accepts without mangling.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the device name is empty".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "the device name is {} characters long, at most {NAME_MAX} are allowed",
            name.len()
        ));
    }
    if matches!(name, "." | ".." | "control") {
        return Err(format!("`{name}` cannot be a device name"));
    }
    check_chars(name, "device name")
}

/// Checks a device UUID: 1 to 128 characters from the same set as names.
pub fn check_uuid(uuid: &str) -> Result<(), String> {
    if uuid.is_empty() {
        return Err("the UUID is empty".into());
    }
    if uuid.len() > UUID_MAX {
        return Err(format!(
            "the UUID is {} characters long, at most {UUID_MAX} are allowed",
            uuid.len()
        ));
    }
    check_chars(uuid, "UUID")
}

fn check_chars(s: &str, what: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)))
    {
        Some(c) => Err(format!(
            "the {what} `{}` contains {c:?}; allowed are A-Z a-z 0-9 and # + - . : = @ _",
            s.escape_default()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["r0", "a", "data-remap_1", "x.y:z=w@v+u#t", &"n".repeat(127)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "control",
            "a/b",
            "a b",
            "tab\there",
            "é",
            "a\nb",
            "$x",
            &"n".repeat(128),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("a/b").unwrap_err().contains("'/'"));
        assert!(check_name(&"n".repeat(128))
            .unwrap_err()
            .contains("128 characters"));
        assert_eq!(check_uuid("CRYPT-abc-123"), Ok(()));
        assert!(check_uuid(&"u".repeat(129)).is_err());
        assert!(check_uuid("").is_err());
        assert!(check_uuid("a b").is_err());
    }
}
