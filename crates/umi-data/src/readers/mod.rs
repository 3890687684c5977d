//! Where data enters umi: readers from the public tool-use datasets into α-UMi
//! [`Conversation`]s, the one form role samples, training and evaluation are built from.
//!
//! Every reader keeps going past a bad record: it is skipped and recorded in the
//! [`ReadReport`] with its file and record index, so a whole set never fails silently and a
//! single typo never loses the rest. Only an unreadable file (missing, not JSON at all) is an
//! error.
//!
//! - [`read_alpha_umi`]: α-UMi conversation JSON (`{tools, instruction, conversations}`), as
//!   `raw_data_stage_2.json` and the ToolBench test files.

pub mod api_bank;
pub mod toolalpaca;
pub mod toolbench;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::conversation::{Conversation, Speaker};
use crate::python::json::{PyJson, py_json_loads};

/// The dataset formats umi reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// α-UMi conversation JSON.
    AlphaUmi,
    /// ToolBench raw DFSDT answer files (a file or a folder of them), converted as GLPFT's
    /// `prepro_raw_stage_1.py` + `prepro_raw_stage_2.py` do, keeping every record.
    ToolBench,
    /// API-Bank dialogues (`lv1-lv2-samples` JSON-lines files or folders, `lv3-train.json`,
    /// `test-data/level-*.json`).
    ApiBank,
    /// ToolAlpaca evaluation sets (`eval_simulated.json`, `eval_real.json`): the first gold step
    /// of each instruction as a scorable decision point.
    ToolAlpaca,
}

impl std::str::FromStr for DataFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "alpha-umi" | "alpha_umi" | "umi" => Ok(Self::AlphaUmi),
            "toolbench" => Ok(Self::ToolBench),
            "api-bank" | "apibank" => Ok(Self::ApiBank),
            "toolalpaca" => Ok(Self::ToolAlpaca),
            other => Err(format!(
                "unknown data format {other:?} (expected alpha-umi, toolbench, api-bank or toolalpaca)"
            )),
        }
    }
}

/// Reads `path` (a file, or a folder for formats made of many files) in `format`.
///
/// Conversations larger than umi takes (more than [`MAX_TURNS`] turns or
/// [`MAX_TOOLS`](crate::prompt::MAX_TOOLS) tools) are skipped and reported too; their index is
/// their position among the conversations read from `path`.
///
/// # Errors
///
/// [`ReadError`] when the input cannot be read at all; bad records are skipped and reported.
pub fn read(format: DataFormat, path: &Path) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    let (conversations, mut report) = match format {
        DataFormat::AlphaUmi => read_alpha_umi(path),
        DataFormat::ToolBench => toolbench::read_toolbench(path),
        DataFormat::ApiBank => api_bank::read_api_bank(path),
        DataFormat::ToolAlpaca => toolalpaca::read_toolalpaca(path),
    }?;
    let mut kept = Vec::with_capacity(conversations.len());
    for (index, c) in conversations.into_iter().enumerate() {
        match check_size(&c) {
            Ok(()) => kept.push(c),
            Err(reason) => report.skip(path, index, format!("conversation {index}: {reason}")),
        }
    }
    report.kept = kept.len();
    Ok((kept, report))
}

/// Most turns a conversation may have. Role samples repeat the whole history before each turn
/// (as the reference's do), so their size grows with the square of the turns; ToolBench's
/// longest records have fewer than 100.
pub const MAX_TURNS: usize = 512;

/// Checks that a conversation is small enough to make role samples and prompts from: at most
/// [`MAX_TURNS`] turns and [`MAX_TOOLS`](crate::prompt::MAX_TOOLS) tools.
///
/// # Errors
///
/// The reason, with the count and the limit.
pub fn check_size(c: &Conversation) -> Result<(), String> {
    let (turns, tools) = (c.conversations.len(), c.tools.len());
    if turns > MAX_TURNS {
        return Err(format!(
            "{turns} turns, more than the {MAX_TURNS} umi takes (role samples repeat the history \
             at every turn)"
        ));
    }
    if tools > crate::prompt::MAX_TOOLS {
        return Err(format!(
            "{tools} tools, more than the {} a prompt may list",
            crate::prompt::MAX_TOOLS
        ));
    }
    Ok(())
}

/// A file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the JSON (or JSON-lines) document its format requires.
    #[error("{path} is not a valid {format} file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// One skipped record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file it came from.
    pub file: PathBuf,
    /// Its index in the file (0-based; the line index for JSON lines).
    pub index: usize,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record {}: {}",
            self.file.display(),
            self.index,
            self.reason
        )
    }
}

/// What a reader did: records seen, kept, and every skipped one with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    /// Records looked at.
    pub records: usize,
    /// Conversations produced.
    pub kept: usize,
    /// Records skipped, in order.
    pub skipped: Vec<Skipped>,
}

impl ReadReport {
    /// Replaces the reason given for skipping record `index` of `file` with `why` (for each
    /// pair), e.g. the record [`read_json_array`] could not represent; a record not skipped
    /// is recorded as skipped.
    pub(crate) fn explain(&mut self, file: &Path, unreadable: Unreadable) {
        for (index, why) in unreadable {
            match self
                .skipped
                .iter_mut()
                .find(|s| s.index == index && s.file == file)
            {
                Some(s) => s.reason = format!("record {index}: {why}"),
                None => self.skip(file, index, format!("record {index}: {why}")),
            }
        }
    }

    /// Records one skipped record.
    pub fn skip(&mut self, file: &Path, index: usize, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            file: file.to_path_buf(),
            index,
            reason: reason.into(),
        });
    }

    /// Adds another report's counts (for readers over several files).
    pub fn merge(&mut self, other: ReadReport) {
        self.records += other.records;
        self.kept += other.kept;
        self.skipped.extend(other.skipped);
    }
}

impl fmt::Display for ReadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records, {} kept, {} skipped",
            self.records,
            self.kept,
            self.skipped.len()
        )
    }
}

/// The text of `path`, without a leading UTF-8 byte order mark.
pub(crate) fn read_text(path: &Path) -> Result<String, ReadError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// `text` without a leading UTF-8 byte order mark (as Python's `utf-8-sig` reads it).
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

pub(crate) fn read_json(path: &Path, format: &'static str) -> Result<Value, ReadError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| ReadError::Format {
        path: path.to_path_buf(),
        format,
        message: e.to_string(),
    })
}

/// Checks what role splitting and evaluation rely on: a user turn first, no empty tool list
/// entry without a `Name`, and a size within [`check_size`]. Returns the reason a conversation
/// is unusable.
pub fn check_conversation(c: &Conversation) -> Result<(), String> {
    check_size(c)?;
    match c.conversations.first() {
        None => return Err("no turns".into()),
        Some(t) if t.from != Speaker::User => {
            return Err(format!(
                "the first turn is from {:?}, not the user",
                t.from.as_str()
            ));
        }
        _ => {}
    }
    if let Some(i) = c
        .tools
        .iter()
        .position(|t| crate::tool_doc::tool_name(t).is_none())
    {
        return Err(format!("tool {i} has no string \"Name\""));
    }
    Ok(())
}

/// Reads an α-UMi conversation file: a JSON array of `{tools, instruction, conversations}`
/// records (`raw_data_stage_2.json`, `GLPFT/dataset/toolbench/test/*.json`). A leading UTF-8
/// byte order mark is ignored. A record that Python's `json.load` reads but that cannot be
/// represented here (`NaN`, `Infinity`, a lone surrogate escape such as `"\ud800"`) is skipped
/// and reported like any other bad record.
///
/// # Errors
///
/// [`ReadError`] when the file cannot be read or is not a JSON array (a syntax error Python
/// rejects too); bad records are skipped and listed in the report instead.
pub fn read_alpha_umi(path: &Path) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    parse_alpha_umi(&read_text(path)?, path)
}

/// As [`read_alpha_umi`], from the file's text (`origin` names it in messages and the report):
/// for files that are not on a disk, such as one picked in a browser.
///
/// # Errors
///
/// [`ReadError::Format`] when the text is not a JSON array (a syntax error Python rejects too);
/// bad records are skipped and listed in the report instead.
pub fn parse_alpha_umi(
    text: &str,
    origin: &Path,
) -> Result<(Vec<Conversation>, ReadReport), ReadError> {
    let records = json_array_records(
        text,
        origin,
        "α-UMi conversation JSON",
        "expected a JSON array of {tools, instruction, conversations} records",
    )?;
    let mut report = ReadReport::default();
    let mut out = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        report.records += 1;
        match record
            .and_then(|r| serde_json::from_value::<Conversation>(r).map_err(|e| e.to_string()))
            .and_then(|c| check_conversation(&c).map(|()| c))
        {
            Ok(c) => out.push(c),
            Err(reason) => report.skip(origin, index, reason),
        }
    }
    report.kept = out.len();
    Ok((out, report))
}

/// The records of the JSON array `text` (a leading byte order mark ignored), each `Err` with
/// the reason when only Python's `json.load` can read it (`NaN`, `Infinity`, a lone surrogate
/// escape), so that such a record is skipped like other bad records instead of rejecting the
/// whole file.
///
/// # Errors
///
/// [`ReadError::Format`] naming `origin` and `format`: `not_array` when the JSON is not an
/// array, the parser's message when it is not JSON Python reads either.
pub(crate) fn json_array_records(
    text: &str,
    origin: &Path,
    format: &'static str,
    not_array: &str,
) -> Result<Vec<Result<Value, String>>, ReadError> {
    let text = strip_bom(text);
    match serde_json::from_str(text) {
        Ok(Value::Array(records)) => Ok(records.into_iter().map(Ok).collect()),
        Ok(_) => Err(ReadError::Format {
            path: origin.to_path_buf(),
            format,
            message: not_array.into(),
        }),
        Err(e) => python_only_records(text).ok_or_else(|| ReadError::Format {
            path: origin.to_path_buf(),
            format,
            message: e.to_string(),
        }),
    }
}

/// Records [`read_json_array`] could not represent: `(index, reason)`.
pub(crate) type Unreadable = Vec<(usize, String)>;

/// [`json_array_records`] of a file, for readers that look at the records together: records
/// only Python reads are `Null` here and listed with their reasons, to be passed to
/// [`ReadReport::explain`] once the reader has skipped them (as it skips any non-object).
///
/// # Errors
///
/// As [`json_array_records`], and [`ReadError::Io`] when the file cannot be read.
pub(crate) fn read_json_array(
    path: &Path,
    format: &'static str,
    not_array: &str,
) -> Result<(Vec<Value>, Unreadable), ReadError> {
    let mut unreadable = Vec::new();
    let records = json_array_records(&read_text(path)?, path, format, not_array)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|why| {
                unreadable.push((i, why));
                Value::Null
            })
        })
        .collect();
    Ok((records, unreadable))
}

/// The records of a JSON array that Python's `json.load` reads but serde_json does not (`NaN`,
/// `Infinity`, a lone surrogate escape such as `"\ud800"`): each record is parsed alone, and
/// those only Python can read are `Err` with the reason, to be skipped like other bad records.
/// `None` when `text` is not such an array (a syntax error Python rejects too).
fn python_only_records(text: &str) -> Option<Vec<Result<Value, String>>> {
    array_elements(text)?
        .into_iter()
        .map(|range| match py_json_loads(&text[range.clone()]) {
            PyJson::Parsed(value) => Some(Ok(value)),
            PyJson::Unrepresentable(why) => {
                let line = 1 + text[..range.start].matches('\n').count();
                Some(Err(format!(
                    "{why} (the position is within the record, which starts on line {line})"
                )))
            }
            PyJson::Invalid(_) => None,
        })
        .collect()
}

/// The byte ranges of the elements of the JSON array `text`, found from its strings and
/// brackets alone (the elements themselves are not checked), or `None` when `text` is not
/// shaped as one array.
fn array_elements(text: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let b = text.as_bytes();
    let skip_space = |mut i: usize| {
        while b.get(i).is_some_and(|c| b" \t\r\n".contains(c)) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_space(i + 1);
    let mut elements = Vec::new();
    if b.get(i) == Some(&b']') {
        return (skip_space(i + 1) == b.len()).then_some(elements);
    }
    loop {
        let start = i;
        let (mut depth, mut in_string) = (0usize, false);
        // up to the `,` or `]` that ends the element
        loop {
            let c = *b.get(i)?;
            match (in_string, c) {
                (true, b'\\') => i += 1,
                (true, b'"') | (false, b'"') => in_string = !in_string,
                (true, _) => {}
                (false, b'[' | b'{') => depth += 1,
                (false, b']' | b'}') if depth > 0 => depth -= 1,
                (false, b',' | b']') if depth == 0 => break,
                (false, b'}') => return None,
                (false, _) => {}
            }
            i += 1;
        }
        let end = start
            + text[start..i]
                .trim_end_matches([' ', '\t', '\r', '\n'])
                .len();
        if end == start {
            return None;
        }
        elements.push(start..end);
        if b[i] == b']' {
            return (skip_space(i + 1) == b.len()).then_some(elements);
        }
        i = skip_space(i + 1);
    }
}

/// Which records of a file a command uses: all, the train split or the dev split (see [`is_dev`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Every record.
    All,
    /// Records not in dev.
    Train,
    /// Every `every`-th record, from the first.
    Dev,
}

impl Split {
    /// Whether record `index` belongs to this split for period `every`.
    pub fn keeps(self, index: usize, every: usize) -> bool {
        match self {
            Split::All => true,
            Split::Train => !is_dev(index, every),
            Split::Dev => is_dev(index, every),
        }
    }

    /// The records of `items` in this split for period `every`, in order.
    pub fn select<T>(self, items: Vec<T>, every: usize) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.keeps(*i, every))
            .map(|(_, item)| item)
            .collect()
    }
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Split::All),
            "train" => Ok(Split::Train),
            "dev" => Ok(Split::Dev),
            other => Err(format!(
                "unknown split {other:?} (expected all, train or dev)"
            )),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::All => "all",
            Split::Train => "train",
            Split::Dev => "dev",
        })
    }
}

/// The deterministic train/dev split umi uses for a conversation file: record `i` is in dev when
/// `i % every == 0` (every = 6 turns the 300 OOD trajectories into 250 train and 50 dev).
pub fn is_dev(index: usize, every: usize) -> bool {
    every > 0 && index.is_multiple_of(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_are_skipped_and_counted() {
        let dir = std::env::temp_dir().join(format!("umi-readers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conv.json");
        std::fs::write(
            &path,
            r#"[
              {"tools": [{"Name": "a"}], "instruction": "q", "conversations": [{"from": "user", "value": "q"}]},
              {"tools": [], "instruction": "q", "conversations": [{"from": "robot", "value": "q"}]},
              {"tools": [], "instruction": "q", "conversations": [{"from": "assistant", "value": "x"}]},
              {"tools": [{"function": "f"}], "instruction": "q", "conversations": [{"from": "user", "value": "q"}]},
              {"instruction": "q"}
            ]"#,
        )
        .unwrap();
        let (kept, report) = read_alpha_umi(&path).unwrap();
        assert_eq!((kept.len(), report.records, report.kept), (1, 5, 1));
        let indices: Vec<usize> = report.skipped.iter().map(|s| s.index).collect();
        assert_eq!(indices, [1, 2, 3, 4]);
        assert!(report.skipped[0].reason.contains("robot"), "{report:?}");
        assert!(report.skipped[1].reason.contains("not the user"));
        assert!(report.skipped[2].reason.contains("tool 0"));
        assert!(report.skipped[3].reason.contains("tools"));
        assert!(report.skipped[0].to_string().contains("conv.json record 1"));

        std::fs::write(&path, "{\"not\": \"an array\"}").unwrap();
        let err = read_alpha_umi(&path).unwrap_err().to_string();
        assert!(
            err.contains("conv.json") && err.contains("JSON array"),
            "{err}"
        );
        let err = read_alpha_umi(&dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bom_is_accepted_and_records_only_python_reads_are_skipped() {
        let good = r#"{"tools": [], "instruction": "q", "conversations": [{"from": "user", "value": "q, [x] {y} \"z\""}]}"#;
        let text = format!(
            "\u{feff}[\n  {good},\n  {{\"tools\": [], \"instruction\": \"\\ud800\", \"conversations\": []}},\n  {{\"tools\": [{{\"Name\": \"a\", \"input\": NaN}}], \"instruction\": \"q\", \"conversations\": []}},\n  {good}\n]\n"
        );
        let origin = Path::new("conv.json");
        let (kept, report) = parse_alpha_umi(&text, origin).unwrap();
        assert_eq!((kept.len(), report.records, report.kept), (2, 4, 2));
        assert_eq!(kept[0].conversations[0].value, "q, [x] {y} \"z\"");
        let indices: Vec<usize> = report.skipped.iter().map(|s| s.index).collect();
        assert_eq!(indices, [1, 2]);
        assert!(report.skipped[0].reason.contains("surrogate"), "{report:?}");
        assert!(report.skipped[0].reason.contains("line 3"), "{report:?}");
        assert!(report.skipped[1].reason.contains("Python"), "{report:?}");
        // a BOM alone changes nothing; a real syntax error still rejects the file, with its line
        let (kept, report) = parse_alpha_umi(&format!("\u{feff}[{good}]"), origin).unwrap();
        assert_eq!((kept.len(), report.skipped.len()), (1, 0));
        for broken in [
            format!("[{good},\n {{\"a\": NaN}}, {{\"b\": }}]"),
            format!("[{good},]"),
            format!("[{good}"),
            format!("[{good}] x"),
            "{\"a\": NaN}".to_string(),
        ] {
            let e = parse_alpha_umi(&broken, origin).unwrap_err().to_string();
            assert!(e.contains("conv.json is not a valid"), "{broken}: {e}");
        }
        assert!(parse_alpha_umi("[]", origin).unwrap().0.is_empty());
    }

    #[test]
    fn oversized_conversations_are_skipped_and_counted() {
        let turn = |i: usize| match i % 2 {
            0 => serde_json::json!({"from": "user", "value": "q"}),
            _ => serde_json::json!({"from": "assistant", "value": "a Next: give up."}),
        };
        let record = |turns: usize, tools: usize| {
            serde_json::json!({
                "tools": (0..tools).map(|i| serde_json::json!({"Name": format!("t{i}")})).collect::<Vec<_>>(),
                "instruction": "q",
                "conversations": (0..turns).map(turn).collect::<Vec<_>>(),
            })
        };
        let text = serde_json::json!([
            record(MAX_TURNS, 1),
            record(MAX_TURNS + 1, 1),
            record(2, crate::prompt::MAX_TOOLS + 1),
        ])
        .to_string();
        let dir = std::env::temp_dir().join(format!("umi-readers-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conv.json");
        std::fs::write(&path, &text).unwrap();
        for (kept, report) in [
            parse_alpha_umi(&text, &path).unwrap(),
            read(DataFormat::AlphaUmi, &path).unwrap(),
        ] {
            assert_eq!((kept.len(), report.records, report.kept), (1, 3, 1));
            assert_eq!(kept[0].conversations.len(), MAX_TURNS);
            let skipped: Vec<String> = report.skipped.iter().map(|s| s.to_string()).collect();
            assert_eq!(skipped.len(), 2);
            assert!(
                skipped[0].contains("conv.json record 1: 513 turns, more than the 512"),
                "{skipped:?}"
            );
            assert!(
                skipped[1].contains("record 2: 1001 tools, more than the 1000"),
                "{skipped:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dev_split_takes_every_sixth() {
        let dev: Vec<usize> = (0..300).filter(|&i| is_dev(i, 6)).collect();
        assert_eq!(dev.len(), 50);
        assert_eq!(&dev[..3], &[0, 6, 12]);
        assert!(!is_dev(3, 0));
        let train: Split = "train".parse().unwrap();
        assert_eq!((0..300).filter(|&i| train.keeps(i, 6)).count(), 250);
        let items: Vec<usize> = (0..13).collect();
        assert_eq!(Split::Dev.select(items.clone(), 6), vec![0, 6, 12]);
        assert_eq!(Split::Train.select(items.clone(), 6).len(), 10);
        assert_eq!(Split::All.select(items.clone(), 6), items);
        assert!("test".parse::<Split>().unwrap_err().contains("test"));
    }
}
