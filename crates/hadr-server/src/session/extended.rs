//! The extended query protocol: Parse, Bind, Describe, Execute and Close, and
//! portals that hand out their rows in batches (Execute with a row limit).

use hadr_sql::{Command, PgType};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, CloseComplete, ParseComplete, PortalSuspended,
};
use pgwire::messages::PgWireBackendMessage;

use super::portal::Portal;
use super::state::Session;
use super::statement::{complete, field, fmt_binary, send_rows};
use super::tx::Event;
use super::wire::{Stream, Wire};
use crate::errors::{sqlstate, PgError};
use crate::exec::{Outcome, Prepared};
use crate::values;

impl Session {
    /// Parse: prepare one statement under `name` ("" is the unnamed one).
    pub(super) fn parse<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        name: String,
        query: String,
        oids: Vec<u32>,
    ) -> Result<(), PgError> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(PgError::new(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let stmts = hadr_sql::split(&query);
        if stmts.len() > 1 {
            return Err(PgError::new(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let text = stmts.into_iter().next().unwrap_or_default();
        let cmd = hadr_sql::classify(&text);
        let p = self.prepare_text(text, cmd, oids)?;
        self.statements.insert(name, p);
        wire.send(PgWireBackendMessage::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    /// Bind: decode the values for a statement's parameters into a portal.
    pub(super) fn bind<S: Stream>(&mut self, wire: &mut Wire<S>, b: Bind) -> Result<(), PgError> {
        let sname = b.statement_name.unwrap_or_default();
        let pname = b.portal_name.unwrap_or_default();
        let stmt = self.statements.get(&sname).cloned().ok_or_else(|| {
            PgError::new(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                format!("prepared statement \"{sname}\" does not exist"),
            )
        })?;
        if b.parameters.len() != stmt.param_types.len() {
            return Err(PgError::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!("bind message supplies {} parameters, but prepared statement \"{sname}\" requires {}", b.parameters.len(), stmt.param_types.len()),
            ));
        }
        let fmt = |codes: &[i16], i: usize| -> bool {
            match codes.len() {
                0 => false,
                1 => codes[0] == 1,
                _ => codes.get(i).copied().unwrap_or(0) == 1,
            }
        };
        let mut params = Vec::with_capacity(b.parameters.len());
        for (i, raw) in b.parameters.iter().enumerate() {
            let v = values::decode_param(
                raw.as_deref(),
                stmt.param_types[i],
                fmt(&b.parameter_format_codes, i),
            )?;
            params.push(v);
        }
        let ncols = stmt.columns.len().max(1);
        let result_binary = (0..ncols)
            .map(|i| fmt(&b.result_column_format_codes, i))
            .collect();
        self.portals.insert(
            pname,
            Portal {
                stmt,
                params,
                result_binary,
                described: None,
                pending: None,
                exhausted: false,
            },
        );
        wire.send(PgWireBackendMessage::BindComplete(BindComplete::new()));
        Ok(())
    }

    /// Describe a statement (`target` b'S': parameters and columns) or a portal (columns).
    pub(super) fn describe<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        target: u8,
        name: String,
    ) -> Result<(), PgError> {
        if target == b'S' {
            let stmt = self.statements.get(&name).cloned().ok_or_else(|| {
                PgError::new(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    format!("prepared statement \"{name}\" does not exist"),
                )
            })?;
            wire.send(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(stmt.param_types.iter().map(|t| t.oid()).collect()),
            ));
            describe_columns(wire, &stmt, None);
            return Ok(());
        }
        let portal = self
            .portals
            .get_mut(&name)
            .ok_or_else(|| no_portal(&name))?;
        let stmt = portal.stmt.clone();
        let binary = portal.result_binary.clone();
        // Types announced now bind Execute: a column whose type SQLite could
        // only tell from the data is sent as text, as announced.
        let types: Vec<PgType> = stmt
            .columns
            .iter()
            .map(|c| c.ty.unwrap_or(PgType::Text))
            .collect();
        portal.described = Some(types);
        describe_columns(wire, &stmt, Some(&binary));
        Ok(())
    }

    /// Close a prepared statement (`target` b'S') or a portal.
    pub(super) fn close<S: Stream>(&mut self, wire: &mut Wire<S>, target: u8, name: String) {
        if target == b'S' {
            self.statements.remove(&name);
        } else {
            self.portals.remove(&name);
        }
        wire.send(PgWireBackendMessage::CloseComplete(CloseComplete::new()));
    }

    /// Execute a portal, sending at most `max_rows` rows (0: all).
    pub(super) fn execute_portal<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        name: String,
        max_rows: i32,
    ) -> Result<(), PgError> {
        let portal = self
            .portals
            .get_mut(&name)
            .ok_or_else(|| no_portal(&name))?;
        if portal.exhausted {
            let tag = hadr_sql::command_tag(&portal.stmt.command, 0);
            return complete(wire, &tag);
        }
        portal.exhausted = true;
        // A suspended portal continues where it stopped.
        if let Some((outcome, sent)) = portal.pending.take() {
            let binary = portal.result_binary.clone();
            return self.send_batch(wire, &name, outcome, sent, max_rows, &binary);
        }
        let stmt = portal.stmt.clone();
        let params = portal.params.clone();
        let binary = portal.result_binary.clone();
        let described = portal.described.clone();
        let limited = max_rows > 0 && !stmt.columns.is_empty();
        let r = if limited {
            // The statement runs to completion here (its commit too, outside
            // a block); the portal keeps the rows not sent yet.
            self.check_tx(Event::Statement)
                .and_then(|()| self.execute_checked(&stmt, params, described))
                .and_then(|outcome| self.send_batch(wire, &name, outcome, 0, max_rows, &binary))
        } else {
            self.run_statement(wire, stmt, params, described, binary, false)
        };
        if r.is_err() {
            self.failed();
        }
        r
    }

    /// Send rows `from..` of an outcome, at most `max_rows` (0: all); suspend
    /// the portal if rows remain, else complete it.
    fn send_batch<S: Stream>(
        &mut self,
        wire: &mut Wire<S>,
        portal: &str,
        outcome: Outcome,
        from: usize,
        max_rows: i32,
        binary: &[bool],
    ) -> Result<(), PgError> {
        let end = if max_rows > 0 {
            (from + max_rows as usize).min(outcome.rows.len())
        } else {
            outcome.rows.len()
        };
        send_rows(wire, &outcome, from, end, binary)?;
        if end < outcome.rows.len() {
            wire.send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()));
            if let Some(p) = self.portals.get_mut(portal) {
                p.pending = Some((outcome, end));
                p.exhausted = false;
            }
            return Ok(());
        }
        let cmd = self
            .portals
            .get(portal)
            .map(|p| p.stmt.command.clone())
            .unwrap_or(Command::Select);
        let n = if matches!(cmd, Command::Insert | Command::Update | Command::Delete) {
            outcome.changes
        } else {
            outcome.rows.len() as u64
        };
        complete(wire, &hadr_sql::command_tag(&cmd, n))
    }
}

fn no_portal(name: &str) -> PgError {
    PgError::new(
        sqlstate::INVALID_CURSOR_NAME,
        format!("portal \"{name}\" does not exist"),
    )
}

/// RowDescription (or NoData) for a statement's result columns.
fn describe_columns<S: Stream>(wire: &mut Wire<S>, stmt: &Prepared, binary: Option<&[bool]>) {
    if matches!(stmt.command, Command::Show(_)) {
        wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
            vec![field("setting", PgType::Text, false)],
        )));
    } else if stmt.columns.is_empty() {
        wire.send(PgWireBackendMessage::NoData(NoData::new()));
    } else {
        let fields = stmt
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                field(
                    &c.name,
                    c.ty.unwrap_or(PgType::Text),
                    binary.map(|b| fmt_binary(b, i)).unwrap_or(false),
                )
            })
            .collect();
        wire.send(PgWireBackendMessage::RowDescription(RowDescription::new(
            fields,
        )));
    }
}
