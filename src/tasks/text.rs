//! `text`: byte-level language modelling on a file. Every byte is a token
//! (`FIRST_SYMBOL + byte`), an example of length L is a window of L + 1 bytes
//! (L inputs, each predicting the next byte) and the loss covers every
//! position. The file is split by byte ranges: the first
//! `1 - validation_fraction` trains, the rest validates. Files are read with
//! positioned reads, so a file of any size costs no memory beyond one batch.

use super::{Example, Task, TaskDef, FIRST_SYMBOL};
use crate::options::registry::Registered;
use crate::options::FieldError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Tiny Shakespeare (karpathy/char-rnn, public domain text): the default corpus.
const SHIPPED: &[u8] = include_bytes!("tinyshakespeare.txt");
const SHIPPED_NAME: &str = "the shipped Tiny Shakespeare";

pub struct Text;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextOptions {
    /// The file to model, relative to the current directory; absent: the
    /// shipped Tiny Shakespeare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Share of the file, taken from its end, held out for evaluation.
    pub validation_fraction: f64,
    /// Bytes of context per training window.
    pub train_context: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            path: None,
            validation_fraction: 0.1,
            train_context: 64,
        }
    }
}

impl Registered for Text {
    const NAME: &'static str = "text";
    const SUMMARY: &'static str =
        "byte-level language modelling on a file; perplexity by context length (length in bytes)";
    const CITATION: &'static str =
        "Karpathy 2015, char-rnn (Tiny Shakespeare); Press et al. 2022 (extrapolation protocol)";
    type Options = TextOptions;
}

impl TaskDef for Text {
    fn build(options: TextOptions) -> Result<Box<dyn Task>, FieldError> {
        let fraction = options.validation_fraction;
        if !(fraction > 0.0 && fraction <= 0.5) {
            return Err(FieldError::new(
                &["validation_fraction"],
                format!("{fraction}; valid: more than 0 and at most 0.5"),
            ));
        }
        let corpus = Corpus::open(options.path.as_deref())?;
        let size = corpus.len();
        let validation_len = (size as f64 * fraction).floor() as u64;
        let name = corpus.name();
        if validation_len < 2 {
            return Err(FieldError::new(
                &["path"],
                format!(
                    "{name} has {size} bytes, so a validation fraction of {fraction} leaves \
                     {validation_len}; valid: a file whose validation split holds at least 2 bytes"
                ),
            ));
        }
        let train_len = size - validation_len;
        let context = options.train_context as u64;
        if context == 0 || context + 1 > train_len {
            return Err(FieldError::new(
                &["train_context"],
                format!(
                    "{context} bytes; the training split of {name} is {train_len} bytes; \
                     valid: 1 to {}",
                    train_len - 1
                ),
            ));
        }
        Ok(Box::new(TextTask {
            corpus,
            train_len,
            validation_len,
            train_context: options.train_context,
        }))
    }
}

/// The bytes being modelled: the shipped text or an open file.
enum Corpus {
    Shipped,
    File { file: File, path: String, len: u64 },
}

impl Corpus {
    fn open(path: Option<&str>) -> Result<Self, FieldError> {
        let Some(path) = path else {
            return Ok(Corpus::Shipped);
        };
        let error = |what: String| FieldError::new(&["path"], format!("`{path}`: {what}"));
        // Checked before opening: opening a FIFO would block.
        let meta = std::fs::metadata(path).map_err(|e| error(format!("{e}")))?;
        if !meta.is_file() {
            return Err(error("not a regular file; valid: a path to a file".into()));
        }
        if meta.len() == 0 {
            return Err(error("the file is empty; valid: a non-empty file".into()));
        }
        let file = File::open(path).map_err(|e| error(format!("{e}")))?;
        Ok(Corpus::File {
            file,
            path: path.to_string(),
            len: meta.len(),
        })
    }

    fn len(&self) -> u64 {
        match self {
            Corpus::Shipped => SHIPPED.len() as u64,
            Corpus::File { len, .. } => *len,
        }
    }

    fn name(&self) -> String {
        match self {
            Corpus::Shipped => SHIPPED_NAME.into(),
            Corpus::File { path, .. } => format!("`{path}`"),
        }
    }

    /// `count` bytes from `offset`; panics (failing the run) on an I/O error.
    fn read(&self, offset: u64, count: usize) -> Vec<u8> {
        match self {
            Corpus::Shipped => SHIPPED[offset as usize..offset as usize + count].to_vec(),
            Corpus::File { file, path, .. } => {
                let mut buf = vec![0u8; count];
                file.read_exact_at(&mut buf, offset).unwrap_or_else(|e| {
                    panic!("reading {count} bytes at {offset} of `{path}`: {e}")
                });
                buf
            }
        }
    }
}

struct TextTask {
    corpus: Corpus,
    train_len: u64,
    validation_len: u64,
    train_context: usize,
}

impl TextTask {
    /// The window of `length + 1` bytes at `offset`, as an example scored on every position.
    fn window(&self, offset: u64, length: usize) -> Example {
        let tokens = self
            .corpus
            .read(offset, length + 1)
            .into_iter()
            .map(|b| FIRST_SYMBOL + b as usize)
            .collect();
        Example {
            tokens,
            answer_start: 1,
        }
    }
}

impl Task for TextTask {
    fn vocab_size(&self) -> usize {
        FIRST_SYMBOL + 256
    }
    fn train_lengths(&self) -> (usize, usize) {
        (self.train_context, self.train_context)
    }
    /// A training window holds every context from 1 to `train_context` bytes.
    fn seen_lengths(&self) -> (usize, usize) {
        (1, self.train_context)
    }
    /// Context length in bytes.
    fn length_unit(&self) -> &'static str {
        "bytes"
    }
    /// A uniformly placed window of the training split.
    fn example(&self, length: usize, rng: &mut ChaCha8Rng) -> Example {
        let last_start = self.train_len - length as u64 - 1;
        self.window(rng.gen_range(0..=last_start), length)
    }
    fn input_len(&self, length: usize) -> usize {
        length
    }
    fn max_length(&self) -> Option<usize> {
        Some(self.validation_len as usize - 1)
    }
    fn max_length_reason(&self) -> Option<String> {
        Some(format!(
            "the validation split of {} is {} of its {} bytes",
            self.corpus.name(),
            self.validation_len,
            self.corpus.len()
        ))
    }
    /// Consecutive non-overlapping windows from the start of the validation
    /// split, over the same bytes at every length: the first
    /// `min(split - 1, samples × longest)` predicted bytes.
    fn eval_examples(
        &self,
        length: usize,
        samples: usize,
        longest: usize,
        _rng: &mut ChaCha8Rng,
    ) -> Vec<Example> {
        let budget = (self.validation_len - 1).min(samples as u64 * longest as u64);
        let start = self.train_len;
        (0..budget / length as u64)
            .map(|k| self.window(start + k * length as u64, length))
            .collect()
    }
    fn language_model(&self) -> bool {
        true
    }
    /// The context bytes and the bytes predicted (the window shifted by one).
    fn describe(&self, example: &Example) -> (String, String) {
        let text = |tokens: &[usize]| {
            let bytes: Vec<u8> = tokens.iter().map(|t| (t - FIRST_SYMBOL) as u8).collect();
            format!("{:?}", String::from_utf8_lossy(&bytes))
        };
        let n = example.tokens.len();
        (text(&example.tokens[..n - 1]), text(&example.tokens[1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_rejected, task};
    use super::*;
    use rand::SeedableRng;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn bytes_of(ex: &Example) -> Vec<u8> {
        ex.tokens.iter().map(|t| (t - FIRST_SYMBOL) as u8).collect()
    }

    #[test]
    fn training_windows_come_from_the_training_split() {
        // 0..=199 repeated: byte i of the file is i % 200; the last 20 validate.
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 200) as u8).collect();
        let f = file_with(&data);
        let t = task(&format!(
            "{{name: text, path: '{}', train_context: 16, validation_fraction: 0.02}}",
            f.path().display()
        ));
        assert_eq!(t.train_lengths(), (16, 16));
        assert_eq!(t.seen_lengths(), (1, 16));
        assert_eq!(t.vocab_size(), 260);
        assert_eq!(t.max_length(), Some(19));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let ex = t.example(16, &mut rng);
            assert_eq!(ex.tokens.len(), t.input_len(16) + 1);
            assert_eq!(ex.answer_start, 1, "every position is scored");
            let b = bytes_of(&ex);
            let start = data
                .windows(17)
                .position(|w| w == b.as_slice())
                .expect("a window of the file");
            assert!(start + 17 <= 980, "window at {start} reaches validation");
        }
        let again: Vec<Example> = {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            (0..5).map(|_| t.example(16, &mut rng)).collect()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let first: Vec<Example> = (0..5).map(|_| t.example(16, &mut rng)).collect();
        assert_eq!(first, again, "same seed, same windows");
    }

    #[test]
    fn evaluation_tiles_the_validation_split_identically_at_every_length() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let f = file_with(&data);
        let t = task(&format!(
            "{{name: text, path: '{}', train_context: 8, validation_fraction: 0.1}}",
            f.path().display()
        ));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // Validation is bytes 900..1000: 99 predicted bytes at most.
        for (length, samples, longest, windows) in [
            (8, 100, 32, 12),
            (32, 100, 32, 3),
            (8, 2, 32, 8),
            (99, 1, 99, 1),
        ] {
            let exs = t.eval_examples(length, samples, longest, &mut rng);
            assert_eq!(exs.len(), windows, "length {length}, samples {samples}");
            for (k, ex) in exs.iter().enumerate() {
                let from = 900 + k * length;
                assert_eq!(bytes_of(ex), &data[from..from + length + 1]);
            }
        }
    }

    #[test]
    fn shipped_text_is_the_default() {
        let t = task("{name: text}");
        assert_eq!(t.train_lengths(), (64, 64));
        let validation = SHIPPED.len() / 10;
        assert_eq!(t.max_length(), Some(validation - 1));
        let ex = t.example(64, &mut ChaCha8Rng::seed_from_u64(0));
        let text = String::from_utf8(bytes_of(&ex)).unwrap();
        assert!(
            SHIPPED[..SHIPPED.len() - validation]
                .windows(65)
                .any(|w| w == text.as_bytes()),
            "{text}"
        );
        let (x, y) = t.describe(&ex);
        assert_eq!(x.len(), y.len(), "{x} / {y}");
    }

    #[test]
    fn bad_files_and_sizes_are_config_errors_naming_the_path() {
        assert_rejected(
            "{name: text, path: /nonexistent/corpus.txt}",
            "path",
            &["/nonexistent/corpus.txt", "No such file"],
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        assert_rejected(
            &format!("{{name: text, path: '{d}'}}"),
            "path",
            &[&d, "not a regular file"],
        );
        let empty = file_with(b"");
        let e = empty.path().display().to_string();
        assert_rejected(
            &format!("{{name: text, path: '{e}'}}"),
            "path",
            &[&e, "empty"],
        );
        let small = file_with(&[b'a'; 50]);
        let s = small.path().display().to_string();
        assert_rejected(
            &format!("{{name: text, path: '{s}'}}"),
            "train_context",
            &[
                &s,
                "64 bytes",
                "training split",
                "45 bytes",
                "valid: 1 to 44",
            ],
        );
        assert_rejected(
            &format!("{{name: text, path: '{s}', validation_fraction: 0.01, train_context: 8}}"),
            "path",
            &[&s, "50 bytes", "at least 2 bytes"],
        );
        assert_rejected(
            "{name: text, validation_fraction: 0.0}",
            "validation_fraction",
            &["valid: more than 0 and at most 0.5"],
        );
        assert_rejected("{name: text, symbols: 4}", "symbols", &["task `text`"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_rejected_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let p = fifo.display().to_string();
        assert_rejected(
            &format!("{{name: text, path: '{p}'}}"),
            "path",
            &[&p, "not a regular file"],
        );
    }
}
