//! The simple query protocol: one Query message, any number of statements.

use hadr_sql::Command;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::PgWireBackendMessage;

use super::state::Session;
use super::statement::predicts_write;
use super::tx::{self, Event, Run};
use super::wire::{Stream, Wire};
use crate::errors::PgError;

impl Session {
    /// Run a Query message's statements in order, stopping at the first error.
    pub(super) fn simple_query<S: Stream>(&mut self, wire: &mut Wire<S>, text: &str) {
        let stmts = hadr_sql::split(text);
        if stmts.is_empty() {
            wire.send(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ));
            return;
        }
        let stmts: Vec<(String, Command)> = stmts
            .into_iter()
            .map(|s| {
                let c = hadr_sql::classify(&s);
                (s, c)
            })
            .collect();
        // Several statements outside a block run as one implicit transaction, as in PostgreSQL.
        let implicit = stmts.len() > 1
            && !stmts
                .iter()
                .any(|(_, c)| hadr_sql::is_transaction_control(c) || matches!(c, Command::Vacuum))
            && tx::step(self.tx, Event::ImplicitBegin).run == Run::Open;
        if implicit {
            // Take the permit before BEGIN: a block that writes later would
            // otherwise hold a read snapshot that a concurrent commit invalidates.
            if stmts.iter().any(|(_, c)| predicts_write(c)) {
                match self.node.acquire_write(&self.cancel) {
                    Ok(p) => self.permit = Some(p),
                    Err(e) => {
                        wire.error(&self.to_client(e));
                        return;
                    }
                }
            }
            if let Err(e) = self.open_block(false, true) {
                self.permit = None;
                wire.error(&self.to_client(e));
                return;
            }
        }
        for (sql, cmd) in stmts {
            let r = match self.prepare_text(sql, cmd, Vec::new()) {
                Ok(p) => self.run_statement(wire, p, Vec::new(), None, Vec::new(), true),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                self.fail(wire, &e);
                break;
            }
        }
        if implicit {
            match tx::step(self.tx, Event::ImplicitEnd).run {
                Run::Commit => {
                    if let Err(e) = self.commit() {
                        wire.error(&self.to_client(e));
                    }
                }
                _ => self.rollback(),
            }
        }
    }

    /// Send an error; inside a block the block is aborted.
    pub(super) fn fail<S: Stream>(&mut self, wire: &mut Wire<S>, e: &PgError) {
        wire.error(&self.to_client(e.clone()));
        self.failed();
    }
}
