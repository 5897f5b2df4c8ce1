//! Query filters, rendered as one SQL `WHERE` clause with numbered parameters shared by
//! both backends; only text search and attribute matching differ by dialect.

use std::fmt::Write;

use crate::record::lookup_key;

/// What a query matches. Every field is optional; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub service: Option<String>,
    pub min_severity: Option<i32>,
    /// Inclusive, nanoseconds since the epoch.
    pub since: Option<i64>,
    /// Exclusive.
    pub until: Option<i64>,
    /// Words that must appear in the body, as a phrase.
    pub text: Option<String>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    /// Attribute key and the value it must have (compared as text).
    pub attribute: Option<(String, String)>,
}

/// Position after the last record of a page: `(time_unix_nano, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: i64,
}

impl Cursor {
    /// `ts.id`, the form clients pass back in `cursor`.
    pub fn encode(self) -> String {
        format!("{}.{}", self.ts, self.id)
    }

    /// Parses [`Cursor::encode`]'s output.
    pub fn parse(text: &str) -> Option<Self> {
        let (ts, id) = text.split_once('.')?;
        Some(Self {
            ts: ts.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// Which SQL dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    /// SQLite when the text matches many records: probe FTS5 per candidate row (read
    /// newest first through the `ts` index) instead of collecting every match.
    SqliteManyMatches,
    Postgres,
}

/// A `WHERE` clause (possibly `TRUE`) and its parameters, numbered from `$1`.
pub(crate) fn where_clause(
    filter: &Filter,
    cursor: Option<Cursor>,
    dialect: Dialect,
) -> (String, Vec<Param>) {
    let mut sql = String::from("TRUE");
    let mut params = Vec::new();
    let mut bind = |sql: &mut String, template: &str, values: Vec<Param>| {
        let mut text = template.to_owned();
        for (i, value) in values.into_iter().enumerate() {
            params.push(value);
            text = text.replace(&format!("{{{i}}}"), &format!("${}", params.len()));
        }
        let _ = write!(sql, " AND {text}");
    };
    if let Some(service) = &filter.service {
        bind(
            &mut sql,
            "service = {0}",
            vec![Param::Text(service.clone())],
        );
    }
    if let Some(min) = filter.min_severity {
        bind(
            &mut sql,
            "severity_number >= {0}",
            vec![Param::Int(i64::from(min))],
        );
    }
    if let Some(since) = filter.since {
        bind(&mut sql, "ts >= {0}", vec![Param::Int(since)]);
    }
    if let Some(until) = filter.until {
        bind(&mut sql, "ts < {0}", vec![Param::Int(until)]);
    }
    if let Some(trace) = &filter.trace_id {
        bind(
            &mut sql,
            "trace_key = {0} AND trace_id = {1}",
            vec![Param::Int(lookup_key(trace)), Param::Text(trace.clone())],
        );
    }
    if let Some(request) = &filter.request_id {
        bind(
            &mut sql,
            "request_key = {0} AND request_id = {1}",
            vec![
                Param::Int(lookup_key(request)),
                Param::Text(request.clone()),
            ],
        );
    }
    if let Some((key, value)) = &filter.attribute {
        match dialect {
            Dialect::Sqlite | Dialect::SqliteManyMatches => bind(
                &mut sql,
                "CAST(json_extract(attributes, {0}) AS TEXT) = {1}",
                vec![
                    Param::Text(format!("$.\"{key}\"")),
                    Param::Text(value.clone()),
                ],
            ),
            Dialect::Postgres => bind(
                &mut sql,
                "attributes ->> {0} = {1}",
                vec![Param::Text(key.clone()), Param::Text(value.clone())],
            ),
        }
    }
    if let Some(text) = &filter.text {
        match dialect {
            Dialect::Sqlite => bind(
                &mut sql,
                "id IN (SELECT rowid FROM log_text WHERE log_text MATCH {0})",
                vec![Param::Text(fts_phrase(text))],
            ),
            Dialect::SqliteManyMatches => bind(
                &mut sql,
                "EXISTS (SELECT 1 FROM log_text WHERE log_text MATCH {0} \
                 AND log_text.rowid = log_records.id)",
                vec![Param::Text(fts_phrase(text))],
            ),
            Dialect::Postgres => bind(
                &mut sql,
                "to_tsvector('simple', body) @@ phraseto_tsquery('simple', {0})",
                vec![Param::Text(text.clone())],
            ),
        }
    }
    if let Some(cursor) = cursor {
        bind(
            &mut sql,
            "(ts < {0} OR (ts = {0} AND id < {1}))",
            vec![Param::Int(cursor.ts), Param::Int(cursor.id)],
        );
    }
    (sql, params)
}

/// The text as one FTS5 phrase: quoted, inner quotes doubled, so user input is never
/// read as FTS5 query syntax.
pub(crate) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The columns every query reads, in [`crate::record::LogRow`] order.
pub(crate) const COLUMNS: &str = "id, ts, observed_ts, service, severity_number, severity_text, body, \
     trace_id, span_id, request_id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order_and_reused_within_a_condition() {
        let filter = Filter {
            service: Some("api".into()),
            ..Filter::default()
        };
        let (sql, params) = where_clause(&filter, Some(Cursor { ts: 5, id: 7 }), Dialect::Postgres);
        assert_eq!(
            sql,
            "TRUE AND service = $1 AND (ts < $2 OR (ts = $2 AND id < $3))"
        );
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn fts_syntax_in_user_text_is_quoted() {
        assert_eq!(fts_phrase(r#"a" OR b"#), r#""a"" OR b""#);
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor { ts: 17, id: 4 };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::parse("x.1"), None);
    }
}
