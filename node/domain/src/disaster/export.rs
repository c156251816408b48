//! The board as CSV for the prefecture's disaster office: one line per patient, most urgent
//! first, as spreadsheets open it (UTF-8 with a byte-order mark, CRLF, RFC 4180 quoting). A cell
//! that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) is prefixed with `'`:
//! notes are written by users, and the file is opened in the office's spreadsheet.

use super::board::{Board, PatientRow};
use super::{Device, Need, Observation, Safety};
use crate::calendar::jst_minute;

/// The header line's cells.
const HEADER: [&str; 11] = [
    "市町村",
    "患者ID",
    "氏名",
    "医療機器",
    "状況",
    "必要な支援",
    "避難先",
    "確認時刻",
    "メモ",
    "記録ノード",
    "ハブ未反映",
];

/// The board's patient rows as a CSV document.
pub fn csv(board: &Board) -> String {
    let mut out = String::from("\u{feff}");
    line(&mut out, HEADER.iter().map(|h| h.to_string()));
    for row in &board.patients {
        line(&mut out, cells(row));
    }
    out
}

fn cells(row: &PatientRow) -> impl Iterator<Item = String> {
    let current = row.current.as_ref();
    let safety = current.and_then(Observation::safety);
    let devices: Vec<&str> = row.devices.iter().map(|d| Device::label(*d)).collect();
    let needs: Vec<&str> = match safety {
        Some(Safety::NeedsHelp { needs }) => needs.iter().map(|n| Need::label(*n)).collect(),
        _ => vec![],
    };
    let place = match safety {
        Some(Safety::Evacuated { to }) => to.clone(),
        _ => String::new(),
    };
    [
        row.municipality.clone(),
        row.patient.to_string(),
        row.name.clone(),
        devices.join("・"),
        safety.map_or("未確認", Safety::label).to_owned(),
        needs.join("・"),
        place,
        current.map(|o| jst_minute(o.observed_at_ms)).unwrap_or_default(),
        current.map(|o| o.note.clone()).unwrap_or_default(),
        current.map(|o| o.node.to_string()).unwrap_or_default(),
        if row.pending { "はい".into() } else { String::new() },
    ]
    .into_iter()
}

fn line(out: &mut String, cells: impl Iterator<Item = String>) {
    let quoted: Vec<String> = cells.map(|c| cell(&c)).collect();
    out.push_str(&quoted.join(","));
    out.push_str("\r\n");
}

/// One cell: defused if a spreadsheet would evaluate it, quoted if it holds a separator.
fn cell(value: &str) -> String {
    let defused = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    };
    if defused.contains([',', '"', '\n', '\r']) { format!("\"{}\"", defused.replace('"', "\"\"")) } else { defused }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("無事"), "無事");
        assert_eq!(cell("酸素, 電源"), "\"酸素, 電源\"");
        assert_eq!(cell("\"至急\""), "\"\"\"至急\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("2行\n目"), "\"2行\n目\"");
    }
}
