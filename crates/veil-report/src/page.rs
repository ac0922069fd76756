//! The page itself: a constant `index.html` (inline CSS and JS, no data, no external URL) and
//! the escaping of the data script.

use std::path::Path;

/// The page. It holds no data from the run: everything comes from `data.js`, inserted with
/// `textContent`, so a file name cannot become markup.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");

/// `window.VEIL_REPORT = <json>;` with every `<`, `>`, `&`, U+2028 and U+2029 written as a `\u`
/// escape, so no file name can close a script element, open a comment or end a line of
/// JavaScript. Those characters only occur inside JSON strings, where the escapes mean the same.
pub(crate) fn data_script(json: &str) -> String {
    let mut s = String::with_capacity(json.len() + json.len() / 64 + 32);
    s.push_str("window.VEIL_REPORT = ");
    for ch in json.chars() {
        match ch {
            '<' => s.push_str("\\u003c"),
            '>' => s.push_str("\\u003e"),
            '&' => s.push_str("\\u0026"),
            '\u{2028}' => s.push_str("\\u2028"),
            '\u{2029}' => s.push_str("\\u2029"),
            c => s.push(c),
        }
    }
    s.push_str(";\n");
    s
}

/// Percent-encodes one path component for a URL (everything but unreserved characters).
fn pct(component: &str) -> String {
    let mut s = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The relative URL from directory `from` to directory `to` (both absolute), ending with `/`
/// (`../` for a page directory directly inside the output tree).
pub(crate) fn relative_base(from: &Path, to: &Path) -> String {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut s = String::new();
    for _ in common..f.len() {
        s.push_str("../");
    }
    for c in &t[common..] {
        s.push_str(&pct(&c.as_os_str().to_string_lossy()));
        s.push('/');
    }
    if s.is_empty() {
        s.push_str("./");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_script_cannot_be_broken_out_of() {
        let json = serde_json::to_string(&serde_json::json!({
            "p": "</script><!--<script>alert(1)</script>&amp;\u{2028}\u{2029}\"'"
        }))
        .unwrap();
        let s = data_script(&json);
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!s.contains(bad), "{bad:?} in {s}");
        }
        let back: serde_json::Value = serde_json::from_str(
            s.strip_prefix("window.VEIL_REPORT = ")
                .unwrap()
                .strip_suffix(";\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            back["p"],
            "</script><!--<script>alert(1)</script>&amp;\u{2028}\u{2029}\"'"
        );
    }

    #[test]
    fn the_page_requests_nothing_outside_its_directory_tree() {
        let lower = INDEX_HTML.to_ascii_lowercase();
        for bad in [
            "http:",
            "https:",
            "src=\"//",
            "fetch(",
            "xmlhttprequest",
            "innerhtml",
            "outerhtml",
            "insertadjacenthtml",
            "document.write",
            "eval(",
        ] {
            assert!(!lower.contains(bad), "{bad} in index.html");
        }
        let css = &lower[lower.find("<style>").unwrap()..lower.find("</style>").unwrap()];
        assert!(!css.contains("url(") && !css.contains("@import"));
        assert!(lower.contains("content-security-policy"));
    }

    #[test]
    fn relative_bases() {
        assert_eq!(
            relative_base(Path::new("/o/report"), Path::new("/o")),
            "../"
        );
        assert_eq!(
            relative_base(Path::new("/r/page"), Path::new("/o/a b")),
            "../../o/a%20b/"
        );
        assert_eq!(relative_base(Path::new("/o"), Path::new("/o")), "./");
    }
}
