//! Every relative link in the documentation resolves.
//!
//! Walks `README.md` and every other `.md` file at the repository root, and `docs/*.md`. In each,
//! outside fenced code blocks and code spans, it collects the targets of inline links and images
//! (`[text](target)`, `![alt](target)`) and of link reference definitions (`[label]: target`).
//! Targets with a scheme (`https:`, `http:`, `mailto:`) are left alone. For the others: the file
//! must exist relative to the linking file, and an anchor (`file.md#anchor`, `#anchor`) must be
//! the GitHub-style slug of a heading of the target file. No network, no LocalStack.
//!
//! On failure it lists every broken link at once.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives inside the repository").to_path_buf()
}

/// The Markdown files this test checks: `*.md` at the root and in `docs/`, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [root.to_path_buf(), root.join("docs")] {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_file() && path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A fence opener or closer: up to three spaces of indentation in CommonMark, but fences inside
/// list items are indented further, so any indentation is accepted.
fn fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = t.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// The lines of `text` that are not inside a fenced code block, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n => open = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `-` and `_` kept; spaces become
/// hyphens; everything else (punctuation, Markdown markup) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every ATX heading of a Markdown text, duplicates numbered as GitHub does
/// (`name`, `name-1`, `name-2`, ...).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start();
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) || !t[level..].starts_with([' ', '\t']) {
            continue;
        }
        let base = slug(t[level..].trim().trim_end_matches('#'));
        let mut name = base.clone();
        let mut n = 0;
        while seen.contains(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        seen.insert(name);
    }
    seen
}

/// The link targets of the prose lines, with their line numbers. Code spans (which may run over
/// a line break, never over a blank line) are skipped.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut span: Option<usize> = None; // length of the backtick run that opened a code span
    let mut previous = 0; // number of the previous prose line
    let mut paragraph_start = true; // a definition cannot interrupt a paragraph
    for (number, line) in prose_lines(text) {
        let t = line.trim_start();
        if number != previous + 1 {
            paragraph_start = true; // after a fenced block
        }
        previous = number;
        if t.is_empty() {
            span = None;
            paragraph_start = true;
            continue;
        }
        if t.starts_with('#') {
            paragraph_start = true;
        }
        // A link reference definition: `[label]: target`.
        let definition = match t.find("]:") {
            Some(close)
                if paragraph_start && span.is_none() && t.starts_with('[') && !t[..close].contains("](") =>
            {
                Some(close)
            }
            _ => None,
        };
        if !t.starts_with('#') {
            paragraph_start = definition.is_some();
        }
        if let Some(close) = definition {
            if let Some(target) = t[close + 2..].split_whitespace().next() {
                out.push((number, target.trim_matches(['<', '>']).to_string()));
            }
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '`' {
                let run = chars[i..].iter().take_while(|&&c| c == '`').count();
                span = match span {
                    Some(open) if open == run => None,
                    Some(open) => Some(open),
                    None => Some(run),
                };
                i += run;
                continue;
            }
            if span.is_none() && chars[i] == ']' && chars.get(i + 1) == Some(&'(') {
                let rest: String = chars[i + 2..].iter().collect();
                let inner = match rest.find(')') {
                    Some(end) => &rest[..end],
                    None => rest.as_str(),
                };
                let target = inner.split_whitespace().next().unwrap_or("");
                out.push((number, target.trim_matches(['<', '>']).to_string()));
                i += 2 + inner.chars().count();
                continue;
            }
            i += 1;
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    let scheme = target.split(['/', '#', '?']).next().unwrap_or("");
    scheme.contains(':') || target.starts_with("//")
}

/// `%20` and the like, as a browser would before asking for the file.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i + 1..i + 3) {
            Some(hex) if bytes[i] == b'%' => u8::from_str_radix(&String::from_utf8_lossy(hex), 16).ok(),
            _ => None,
        };
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every broken relative link of `files`, as `file:line: target: reason`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        for (line, target) in link_targets(&text) {
            if target.is_empty() {
                broken.push(format!("{shown}:{line}: empty link target"));
                continue;
            }
            if is_external(&target) {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let path = path.split('?').next().unwrap_or("");
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file has a directory").join(percent_decode(path))
            };
            if !resolved.exists() {
                broken.push(format!("{shown}:{line}: `{target}`: no such file {}", resolved.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                broken
                    .push(format!("{shown}:{line}: `{target}`: an anchor into a file that is not Markdown"));
                continue;
            }
            let target_text =
                fs::read_to_string(&resolved).unwrap_or_else(|e| panic!("read {}: {e}", resolved.display()));
            if !anchors(&target_text).contains(&percent_decode(anchor).to_lowercase()) {
                broken.push(format!("{shown}:{line}: `{target}`: no heading with anchor #{anchor}"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = repo_root();
    let files = markdown_files(&root);
    assert!(files.iter().any(|f| f.ends_with("README.md")), "README.md not found under {}", root.display());
    let broken = broken_links(&root, &files);
    assert!(
        broken.is_empty(),
        "{} broken relative link(s) in {} Markdown file(s):\n{}",
        broken.len(),
        files.len(),
        broken.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Beyond the nine: ES256K, EdDSA, ML-DSA"), "beyond-the-nine-es256k-eddsa-ml-dsa");
    assert_eq!(slug("TooManyPublishedKeys or rotation_held"), "toomanypublishedkeys-or-rotation_held");
    assert_eq!(slug("Threat model: who can mint"), "threat-model-who-can-mint");
    assert_eq!(slug("`make test`"), "make-test");
    let doc = "# A\n## A\n```\n# not a heading\n```\n### B.\n";
    let got = anchors(doc);
    assert!(got.contains("a") && got.contains("a-1") && got.contains("b"));
    assert!(!got.contains("not-a-heading"));
}

#[test]
fn links_in_code_are_not_links() {
    let doc = "see [x](a.md), `[y](b.md)`, and a span over a line `[z](c.md)\n[w](d.md)` here\n\n```\n[v](e.md)\n```\n[u]: f.md\n![i](g.png \"title\")\n[not]: a definition inside a paragraph\n";
    let got: Vec<String> = link_targets(doc).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["a.md", "f.md", "g.png"]);
    assert!(is_external("https://example.com/x.md") && is_external("mailto:a@b"));
    assert!(!is_external("docs/x.md#a:b") && !is_external("#anchor"));
}
