//! Splitting scripts into sentences: each sentence is voiced, captioned and timed on its
//! own, so captions change exactly when the audio of their sentence starts.

/// Splits a script into sentences, keeping their end punctuation (Japanese and Latin).
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(c);
        let ends = matches!(c, '。' | '！' | '？' | '!' | '?')
            || (c == '.' && chars.peek().is_none_or(|n| n.is_whitespace()));
        if ends {
            // Keep closing quotes and brackets with their sentence.
            while let Some(&n) = chars.peek() {
                if matches!(n, '」' | '』' | '"' | '\'' | ')' | '）') {
                    current.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            push_sentence(&mut out, &mut current);
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_in_japanese_and_english() {
        assert_eq!(
            split_sentences("こんにちは。今日は晴れ！「元気？」そうですか"),
            vec!["こんにちは。", "今日は晴れ！", "「元気？」", "そうですか"]
        );
        assert_eq!(
            split_sentences("Hello there. It is 3.5 degrees! Fine?\nYes"),
            vec!["Hello there.", "It is 3.5 degrees!", "Fine?", "Yes"]
        );
        assert!(split_sentences("  \n ").is_empty());
    }
}
