//! String rewriting for simulated robots, with no I/O: container mount paths → host paths,
//! loopback and wildcard listen addresses → the robot's own address, and Kubernetes' `$(VAR)`
//! expansion.

use std::collections::BTreeMap;

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Replaces each mount path (container side) that appears as a whole path, or as the start of a
/// longer path, by its host path. `mounts` must be sorted longest first. A mount path is
/// recognised at the start of the string, after a non-path character (`=`, `:`, space, `@`, ...)
/// or after `scheme://`, and must end at the string's end, a `/` or a non-path character, so
/// `/models` is rewritten in `--dir=/models/a` and `file:///models/a` but not in `/data/models`.
pub fn rewrite_paths(s: &str, mounts: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        for (from, to) in mounts {
            if from.is_empty() || !s[i..].starts_with(from.as_str()) {
                continue;
            }
            let before = &s[..i];
            let start_ok = before.is_empty()
                || before.ends_with("://")
                || before.chars().next_back().is_some_and(|c| !is_path_char(c));
            let after = s[i + from.len()..].chars().next();
            let end_ok = after.is_none_or(|c| c == '/' || !is_path_char(c));
            if start_ok && end_ok {
                out.push_str(to);
                i += from.len();
                continue 'outer;
            }
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Replaces `127.0.0.1` and `0.0.0.0` (whole addresses, not parts of longer ones) by `ip`.
pub fn rewrite_loopback(s: &str, ip: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let bytes = s.as_bytes();
    'outer: while i < s.len() {
        for from in ["127.0.0.1", "0.0.0.0"] {
            if !s[i..].starts_with(from) {
                continue;
            }
            let is_addr_byte = |b: u8| b.is_ascii_digit() || b == b'.';
            let start_ok = i == 0 || !is_addr_byte(bytes[i - 1]);
            let end = i + from.len();
            let end_ok = end >= bytes.len() || !is_addr_byte(bytes[end]);
            if start_ok && end_ok {
                out.push_str(ip);
                i = end;
                continue 'outer;
            }
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Kubernetes' expansion of `$(VAR)` in command, args and env values: a defined variable is
/// replaced, an undefined one is left as written, `$$` is a literal `$`.
pub fn expand_vars(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..close + 3]),
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whole CPU cores for a quantity (`500m` → 1, `2` → 2), rounded up as the downward API does
/// with the default divisor.
pub fn cpu_cores(q: &str) -> u64 {
    if let Some(m) = q.strip_suffix('m') {
        m.parse::<u64>().map_or(1, |m| m.div_ceil(1000).max(1))
    } else {
        q.parse::<f64>().map_or(1, |c| {
            let c = c.ceil();
            if c >= 1.0 { c as u64 } else { 1 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<(String, String)> {
        let mut m = vec![
            ("/models".to_owned(), "/state/r0/host/models".to_owned()),
            (
                "/etc/robofleet/policy".to_owned(),
                "/state/p/volumes/policy".to_owned(),
            ),
            (
                "/etc/robofleet".to_owned(),
                "/state/p/volumes/etc".to_owned(),
            ),
        ];
        m.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        m
    }

    #[test]
    fn mount_paths_are_rewritten_only_as_whole_path_prefixes() {
        let m = mounts();
        assert_eq!(rewrite_paths("/models", &m), "/state/r0/host/models");
        assert_eq!(
            rewrite_paths("--model-cache=/models/cache", &m),
            "--model-cache=/state/r0/host/models/cache"
        );
        assert_eq!(
            rewrite_paths("file:///models/a.onnx@sha256:00", &m),
            "file:///state/r0/host/models/a.onnx@sha256:00"
        );
        assert_eq!(rewrite_paths("/data/models", &m), "/data/models");
        assert_eq!(rewrite_paths("/modelsx", &m), "/modelsx");
        assert_eq!(
            rewrite_paths("/etc/robofleet/policy/p.yaml /etc/robofleet/x", &m),
            "/state/p/volumes/policy/p.yaml /state/p/volumes/etc/x"
        );
        assert_eq!(
            rewrite_paths("a:/models:b", &m),
            "a:/state/r0/host/models:b"
        );
        assert_eq!(
            rewrite_paths("héllo /models", &m),
            "héllo /state/r0/host/models"
        );
    }

    #[test]
    fn loopback_and_wildcard_become_the_robot_address() {
        let ip = "127.100.0.2";
        assert_eq!(rewrite_loopback("127.0.0.1:8000", ip), "127.100.0.2:8000");
        assert_eq!(
            rewrite_loopback("--admin-listen=0.0.0.0:8002", ip),
            "--admin-listen=127.100.0.2:8002"
        );
        assert_eq!(
            rewrite_loopback("http://127.0.0.1/x", ip),
            "http://127.100.0.2/x"
        );
        assert_eq!(rewrite_loopback("127.0.0.12:1", ip), "127.0.0.12:1");
        assert_eq!(rewrite_loopback("10.0.0.0.0", ip), "10.0.0.0.0");
        assert_eq!(rewrite_loopback("localhost:1", ip), "localhost:1");
    }

    #[test]
    fn vars_expand_like_kubernetes() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("POD_IP", "127.10.0.5")].into();
        assert_eq!(expand_vars("$(POD_IP):80", &vars), "127.10.0.5:80");
        assert_eq!(expand_vars("$(MISSING) $(A)", &vars), "$(MISSING) 1");
        assert_eq!(expand_vars("$$(A) $ x $(", &vars), "$(A) $ x $(");
    }

    #[test]
    fn cpu_quantities_round_up_to_whole_cores() {
        assert_eq!(cpu_cores("500m"), 1);
        assert_eq!(cpu_cores("1500m"), 2);
        assert_eq!(cpu_cores("2"), 2);
        assert_eq!(cpu_cores("0.5"), 1);
    }
}
