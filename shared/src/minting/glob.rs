//! Glob patterns of the minting policy: `*` matches any run of characters (`/` and `:`
//! included, like IAM's ARN wildcards), `?` exactly one; everything else matches itself.
//! Matching is iterative (no backtracking blow-up): at most `pattern × text` steps.

/// True when `text` matches `pattern` as a whole.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it is currently assumed to stretch to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn wildcards_match_as_documented() {
        for (pattern, text, expected) in [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "anything/at:all", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "example.com", false),
            ("arn:aws:iam::1:role/orders-*", "arn:aws:iam::1:role/orders-api", true),
            ("arn:aws:iam::1:role/orders-*", "arn:aws:iam::2:role/orders-api", false),
            ("**a**", "xxa", true),
            ("é?", "éü", true),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }

    #[test]
    fn long_adversarial_inputs_stay_fast() {
        let pattern = format!("{}b", "*a".repeat(200));
        let text = "a".repeat(4_000);
        assert!(!glob_match(&pattern, &text));
    }

    proptest! {
        #[test]
        fn a_pattern_without_wildcards_matches_only_itself(a in "[a-z:/.-]{0,12}", b in "[a-z:/.-]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn a_star_in_place_of_any_slice_still_matches(text in "[a-z:/]{0,16}", i in 0usize..17, j in 0usize..17) {
            let (i, j) = (i.min(text.len()), j.min(text.len()));
            let (from, to) = (i.min(j), i.max(j));
            let pattern = format!("{}*{}", &text[..from], &text[to..]);
            prop_assert!(glob_match(&pattern, &text));
        }

        #[test]
        fn question_marks_match_exactly_as_many_characters(text in "[a-z]{0,10}", n in 0usize..12) {
            prop_assert_eq!(glob_match(&"?".repeat(n), &text), text.len() == n);
        }
    }
}
