//! hadr's replication protocol: the messages a primary and a standby exchange
//! over the replication port, and their framing. Pure: no I/O.
//!
//! A frame is `[len u32][type u8][body][crc32c u32]`, big-endian, where `len`
//! counts type, body and CRC. The first message on a connection is a
//! [`Hello`] carrying [`PROTOCOL_VERSION`]; a peer speaking another version is
//! refused with a [`Refuse`] naming both versions, never misread. That one
//! refusal keeps the version-2 layout (reason only), so that an older peer
//! can read why; every other refusal carries a [`RefuseCode`] that the
//! receiving side acts on (rewind, re-clone, give up) without reading text.

pub use hadr_log::EpochStart;

/// Version of this protocol. Bump on any incompatible change.
/// 3: refusals carry a [`RefuseCode`]; [`Message::ScatteredPages`].
/// 4: [`Message::Announce`] and [`Message::Topology`] (client addresses).
/// 5: links may run over mutual TLS (docs/security.md §Replication links);
/// [`RefuseCode::TlsRequired`]. Frames are unchanged; the bump makes an
/// older node that still reaches this one (a link without TLS) hear a
/// version refusal rather than a half-understood conversation.
/// The [`Hello`] layout is unchanged, so that a peer of another version
/// still reads it and refuses it cleanly by its version.
pub const PROTOCOL_VERSION: u16 = 5;

/// Most members a [`Topology`] may list (hadr has a primary and up to three
/// standbys; the rest is room for growth, not for a hostile peer's counts).
pub const MAX_TOPOLOGY_MEMBERS: usize = 16;

/// Largest frame accepted (records are batched below this). A record is
/// never split, so this is also the largest transaction that can be
/// shipped: 256 MiB of lz4-compressed changed pages. The first byte of
/// its length stays below a TLS handshake's (crates/hadr-replication/src/link.rs).
pub const MAX_FRAME: usize = 256 << 20;

/// Errors decoding frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// More bytes are needed.
    #[error("incomplete frame: need {0} more bytes")]
    Incomplete(usize),
    /// The length field is out of range.
    #[error("frame length {0} out of range")]
    BadLength(usize),
    /// The checksum does not match.
    #[error("frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// Unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The body does not parse.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

/// Which side a node speaks as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// The primary.
    Primary,
    /// A standby.
    Standby,
    /// A node making a copy of the primary (`hadr clone`).
    Cloner,
}

/// First message of each side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// Sender's role.
    pub role: PeerRole,
    /// Database id ("" for a cloner that has none yet).
    pub database_id: String,
    /// Sender's current epoch.
    pub epoch: u64,
    /// Sender's epoch history.
    pub epoch_history: Vec<EpochStart>,
    /// Standby: the LSN it wants records from (its log end). Primary: its log end.
    pub lsn: u64,
    /// Sender's replication address as configured (matches hadr_target_list entries).
    pub address: String,
}

/// What kind of refusal: the receiver decides on this, never on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefuseCode {
    /// The peers speak different protocol versions.
    Version,
    /// The peers hold different databases.
    OtherDatabase,
    /// The standby is not in the primary's `hadr_target_list`.
    NotListed,
    /// The primary learnt from this very handshake that it was superseded.
    Superseded,
    /// The standby's log has records the primary never had: rewind it.
    NeedsRewind,
    /// The primary no longer keeps the log the standby needs: re-clone it.
    NeedsClone,
    /// The peer asked for something this node cannot serve in its role
    /// (a standby asked for a clone, a node that is not a primary asked to stream).
    WrongRole,
    /// A graceful takeover was refused; the pair goes on as before.
    TakeoverRefused,
    /// The node stopped being a primary (it handed over, was fenced, or
    /// shuts down): the standby looks for the primary elsewhere at once.
    /// A peer older than this code reads it as [`RefuseCode::Other`] and,
    /// as for any refusal, stops following and retries its targets.
    NotPrimary,
    /// This node requires mutual TLS on replication and the peer spoke
    /// plaintext. An older peer reads it as [`RefuseCode::Other`].
    TlsRequired,
    /// Anything else (the reason says what).
    Other,
}

impl RefuseCode {
    fn to_u8(self) -> u8 {
        match self {
            RefuseCode::Version => 1,
            RefuseCode::OtherDatabase => 2,
            RefuseCode::NotListed => 3,
            RefuseCode::Superseded => 4,
            RefuseCode::NeedsRewind => 5,
            RefuseCode::NeedsClone => 6,
            RefuseCode::WrongRole => 7,
            RefuseCode::TakeoverRefused => 8,
            RefuseCode::NotPrimary => 9,
            RefuseCode::TlsRequired => 10,
            RefuseCode::Other => 255,
        }
    }

    /// Unknown codes (a newer peer) read as [`RefuseCode::Other`]: the
    /// reason text still reaches the log.
    fn from_u8(b: u8) -> RefuseCode {
        match b {
            1 => RefuseCode::Version,
            2 => RefuseCode::OtherDatabase,
            3 => RefuseCode::NotListed,
            4 => RefuseCode::Superseded,
            5 => RefuseCode::NeedsRewind,
            6 => RefuseCode::NeedsClone,
            7 => RefuseCode::WrongRole,
            8 => RefuseCode::TakeoverRefused,
            9 => RefuseCode::NotPrimary,
            10 => RefuseCode::TlsRequired,
            _ => RefuseCode::Other,
        }
    }
}

/// A refusal, sent before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refuse {
    /// What kind.
    pub code: RefuseCode,
    /// Why, for both sides' logs.
    pub reason: String,
}

impl Refuse {
    /// A refusal of this kind.
    pub fn new(code: RefuseCode, reason: impl Into<String>) -> Refuse {
        Refuse {
            code,
            reason: reason.into(),
        }
    }
}

/// The cluster as its primary sees it, with the addresses clients reach
/// each member at (`client_address`), for clients that follow the primary
/// (docs/clients.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// The primary's epoch.
    pub epoch: u64,
    /// The primary's client address; None when the sender knows of none.
    pub primary: Option<String>,
    /// The standbys' client addresses (those the primary has heard from).
    pub standbys: Vec<String>,
}

/// Every message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Handshake.
    Hello(Hello),
    /// Handshake refused.
    Refuse(Refuse),
    /// Whole encoded log records starting at `start_lsn` (hadr-log's format).
    Records {
        /// LSN of the first record.
        start_lsn: u64,
        /// Encoded records, back to back.
        bytes: Vec<u8>,
    },
    /// Standby → primary positions.
    Ack {
        /// Received (in memory / written).
        received: u64,
        /// Durable on the standby's disk.
        flushed: u64,
        /// Replayed into the standby's database.
        replayed: u64,
    },
    /// Liveness and peer-window promise (primary's clock, µs since Unix epoch; 0 = none).
    Heartbeat {
        /// Sender's clock.
        now_micros: u64,
        /// Primary's log end.
        end_lsn: u64,
        /// Peer window end.
        peer_window_end_micros: u64,
    },
    /// Cloner → primary: send a snapshot.
    CloneRequest,
    /// Primary → cloner: the snapshot's shape.
    CloneStart {
        /// Database id.
        database_id: String,
        /// Epoch history.
        epoch_history: Vec<EpochStart>,
        /// Epoch.
        epoch: u64,
        /// The snapshot is the state after every record below this LSN.
        lsn: u64,
        /// Page size.
        page_size: u32,
        /// Pages in the snapshot.
        pages: u32,
    },
    /// Primary → cloner: consecutive pages starting at `first_pgno`.
    ClonePages {
        /// First page number.
        first_pgno: u32,
        /// Page images, each page_size bytes, back to back.
        data: Vec<u8>,
    },
    /// Primary → cloner or rewinder: the images of the listed pages, in
    /// that order (a rewind's pages are scattered; [`Message::ClonePages`]
    /// would take one message a run).
    ScatteredPages {
        /// Page numbers, one for each image.
        pgnos: Vec<u32>,
        /// Page images, each page_size bytes, back to back.
        data: Vec<u8>,
    },
    /// Primary → cloner: snapshot complete.
    CloneEnd,
    /// Standby → primary, after the handshake: where clients reach it.
    Announce {
        /// Its `client_address`.
        client_address: String,
    },
    /// Primary → standby: the topology, after the handshake and whenever it
    /// changes, so that a standby's clients learn where the primary is.
    Topology(Topology),
    /// Standby → primary: hand over the primary role (graceful takeover).
    TakeoverRequest,
    /// Primary → standby: writes stopped; everything up to `end_lsn` was
    /// sent; the primary is now a standby.
    TakeoverReady {
        /// The primary's final log end.
        end_lsn: u64,
    },
    /// Rewinder → primary: send the current images of these pages (a
    /// CloneStart, ClonePages for those that exist, then the log from
    /// `from_lsn` to the snapshot as Records, then CloneEnd).
    RewindRequest {
        /// Divergence LSN D: the log is wanted from here.
        from_lsn: u64,
        /// Pages the rewinder's own records after D touched.
        pages: Vec<u32>,
    },
}

const T_HELLO: u8 = 1;
const T_REFUSE: u8 = 2;
const T_RECORDS: u8 = 3;
const T_ACK: u8 = 4;
const T_HEARTBEAT: u8 = 5;
const T_CLONE_REQUEST: u8 = 6;
const T_CLONE_START: u8 = 7;
const T_CLONE_PAGES: u8 = 8;
const T_CLONE_END: u8 = 9;
const T_TAKEOVER_REQUEST: u8 = 10;
const T_TAKEOVER_READY: u8 = 11;
const T_REWIND_REQUEST: u8 = 12;
const T_REFUSE_CODED: u8 = 13;
const T_SCATTERED_PAGES: u8 = 14;
const T_ANNOUNCE: u8 = 15;
const T_TOPOLOGY: u8 = 16;

struct W(Vec<u8>);
impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn u32s(&mut self, v: &[u32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.u32(*x);
        }
    }
    fn history(&mut self, h: &[EpochStart]) {
        self.u32(h.len() as u32);
        for e in h {
            self.u64(e.epoch);
            self.u64(e.start_lsn);
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    what: &'static str,
}
impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.b.len() < n {
            return Err(ProtocolError::Malformed(self.what));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes()?).map_err(|_| ProtocolError::Malformed(self.what))
    }
    fn u32s(&mut self) -> Result<Vec<u32>, ProtocolError> {
        let n = self.u32()? as usize;
        // Refuse counts the body cannot hold before allocating.
        if n > self.b.len() / 4 {
            return Err(ProtocolError::Malformed(self.what));
        }
        (0..n).map(|_| self.u32()).collect()
    }
    fn history(&mut self) -> Result<Vec<EpochStart>, ProtocolError> {
        let n = self.u32()? as usize;
        // Each entry is 16 bytes: refuse counts the body cannot hold before allocating.
        if n > self.b.len() / 16 {
            return Err(ProtocolError::Malformed(self.what));
        }
        (0..n)
            .map(|_| {
                Ok(EpochStart {
                    epoch: self.u64()?,
                    start_lsn: self.u64()?,
                })
            })
            .collect()
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed(self.what))
        }
    }
}

fn role_code(r: PeerRole) -> u8 {
    match r {
        PeerRole::Primary => 1,
        PeerRole::Standby => 2,
        PeerRole::Cloner => 3,
    }
}

impl Message {
    /// Encode as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(64));
        w.u32(0); // length, patched below
        match self {
            Message::Hello(h) => {
                w.u8(T_HELLO);
                w.u16(h.version);
                w.u8(role_code(h.role));
                w.str(&h.database_id);
                w.u64(h.epoch);
                w.history(&h.epoch_history);
                w.u64(h.lsn);
                w.str(&h.address);
            }
            // The version refusal keeps version 2's layout so older peers read it.
            Message::Refuse(r) if r.code == RefuseCode::Version => {
                w.u8(T_REFUSE);
                w.str(&r.reason);
            }
            Message::Refuse(r) => {
                w.u8(T_REFUSE_CODED);
                w.u8(r.code.to_u8());
                w.str(&r.reason);
            }
            Message::Records { start_lsn, bytes } => {
                w.u8(T_RECORDS);
                w.u64(*start_lsn);
                w.bytes(bytes);
            }
            Message::Ack {
                received,
                flushed,
                replayed,
            } => {
                w.u8(T_ACK);
                w.u64(*received);
                w.u64(*flushed);
                w.u64(*replayed);
            }
            Message::Heartbeat {
                now_micros,
                end_lsn,
                peer_window_end_micros,
            } => {
                w.u8(T_HEARTBEAT);
                w.u64(*now_micros);
                w.u64(*end_lsn);
                w.u64(*peer_window_end_micros);
            }
            Message::CloneRequest => w.u8(T_CLONE_REQUEST),
            Message::CloneStart {
                database_id,
                epoch_history,
                epoch,
                lsn,
                page_size,
                pages,
            } => {
                w.u8(T_CLONE_START);
                w.str(database_id);
                w.history(epoch_history);
                w.u64(*epoch);
                w.u64(*lsn);
                w.u32(*page_size);
                w.u32(*pages);
            }
            Message::ClonePages { first_pgno, data } => {
                w.u8(T_CLONE_PAGES);
                w.u32(*first_pgno);
                w.bytes(data);
            }
            Message::ScatteredPages { pgnos, data } => {
                w.u8(T_SCATTERED_PAGES);
                w.u32s(pgnos);
                w.bytes(data);
            }
            Message::CloneEnd => w.u8(T_CLONE_END),
            Message::TakeoverRequest => w.u8(T_TAKEOVER_REQUEST),
            Message::RewindRequest { from_lsn, pages } => {
                w.u8(T_REWIND_REQUEST);
                w.u64(*from_lsn);
                w.u32s(pages);
            }
            Message::TakeoverReady { end_lsn } => {
                w.u8(T_TAKEOVER_READY);
                w.u64(*end_lsn);
            }
            Message::Announce { client_address } => {
                w.u8(T_ANNOUNCE);
                w.str(client_address);
            }
            Message::Topology(t) => {
                w.u8(T_TOPOLOGY);
                w.u64(t.epoch);
                w.str(t.primary.as_deref().unwrap_or_default());
                w.u32(t.standbys.len() as u32);
                for s in &t.standbys {
                    w.str(s);
                }
            }
        }
        let crc = crc32c::crc32c(&w.0[4..]);
        w.u32(crc);
        let len = (w.0.len() - 4) as u32;
        w.0[0..4].copy_from_slice(&len.to_be_bytes());
        w.0
    }

    /// Decode one frame from the front of `buf`; returns the message and the bytes used.
    pub fn decode(buf: &[u8]) -> Result<(Message, usize), ProtocolError> {
        if buf.len() < 4 {
            return Err(ProtocolError::Incomplete(4 - buf.len()));
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if !(5..=MAX_FRAME).contains(&len) {
            return Err(ProtocolError::BadLength(len));
        }
        if buf.len() < 4 + len {
            return Err(ProtocolError::Incomplete(4 + len - buf.len()));
        }
        let frame = &buf[4..4 + len];
        let (content, crc) = frame.split_at(len - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(ProtocolError::Crc { stored, computed });
        }
        let (ty, body) = content
            .split_first()
            .ok_or(ProtocolError::Malformed("empty"))?;
        let msg = match *ty {
            T_HELLO => {
                let mut r = R {
                    b: body,
                    what: "Hello",
                };
                let version = r.u16()?;
                let role = match r.u8()? {
                    1 => PeerRole::Primary,
                    2 => PeerRole::Standby,
                    3 => PeerRole::Cloner,
                    _ => return Err(ProtocolError::Malformed("Hello")),
                };
                let h = Hello {
                    version,
                    role,
                    database_id: r.str()?,
                    epoch: r.u64()?,
                    epoch_history: r.history()?,
                    lsn: r.u64()?,
                    address: r.str()?,
                };
                r.end()?;
                Message::Hello(h)
            }
            T_REFUSE => {
                let mut r = R {
                    b: body,
                    what: "Refuse",
                };
                let reason = r.str()?;
                r.end()?;
                // Only a version refusal uses this layout since version 3;
                // before, an older peer can refuse nothing else (its Hello
                // check runs first).
                Message::Refuse(Refuse::new(RefuseCode::Version, reason))
            }
            T_REFUSE_CODED => {
                let mut r = R {
                    b: body,
                    what: "Refuse",
                };
                let code = RefuseCode::from_u8(r.u8()?);
                let reason = r.str()?;
                r.end()?;
                Message::Refuse(Refuse { code, reason })
            }
            T_RECORDS => {
                let mut r = R {
                    b: body,
                    what: "Records",
                };
                let m = Message::Records {
                    start_lsn: r.u64()?,
                    bytes: r.bytes()?,
                };
                r.end()?;
                m
            }
            T_ACK => {
                let mut r = R {
                    b: body,
                    what: "Ack",
                };
                let m = Message::Ack {
                    received: r.u64()?,
                    flushed: r.u64()?,
                    replayed: r.u64()?,
                };
                r.end()?;
                m
            }
            T_HEARTBEAT => {
                let mut r = R {
                    b: body,
                    what: "Heartbeat",
                };
                let m = Message::Heartbeat {
                    now_micros: r.u64()?,
                    end_lsn: r.u64()?,
                    peer_window_end_micros: r.u64()?,
                };
                r.end()?;
                m
            }
            T_CLONE_REQUEST => {
                R {
                    b: body,
                    what: "CloneRequest",
                }
                .end()?;
                Message::CloneRequest
            }
            T_CLONE_START => {
                let mut r = R {
                    b: body,
                    what: "CloneStart",
                };
                let m = Message::CloneStart {
                    database_id: r.str()?,
                    epoch_history: r.history()?,
                    epoch: r.u64()?,
                    lsn: r.u64()?,
                    page_size: r.u32()?,
                    pages: r.u32()?,
                };
                r.end()?;
                m
            }
            T_CLONE_PAGES => {
                let mut r = R {
                    b: body,
                    what: "ClonePages",
                };
                let m = Message::ClonePages {
                    first_pgno: r.u32()?,
                    data: r.bytes()?,
                };
                r.end()?;
                m
            }
            T_SCATTERED_PAGES => {
                let mut r = R {
                    b: body,
                    what: "ScatteredPages",
                };
                let m = Message::ScatteredPages {
                    pgnos: r.u32s()?,
                    data: r.bytes()?,
                };
                r.end()?;
                m
            }
            T_CLONE_END => {
                R {
                    b: body,
                    what: "CloneEnd",
                }
                .end()?;
                Message::CloneEnd
            }
            T_TAKEOVER_REQUEST => {
                R {
                    b: body,
                    what: "TakeoverRequest",
                }
                .end()?;
                Message::TakeoverRequest
            }
            T_TAKEOVER_READY => {
                let mut r = R {
                    b: body,
                    what: "TakeoverReady",
                };
                let m = Message::TakeoverReady { end_lsn: r.u64()? };
                r.end()?;
                m
            }
            T_REWIND_REQUEST => {
                let mut r = R {
                    b: body,
                    what: "RewindRequest",
                };
                let m = Message::RewindRequest {
                    from_lsn: r.u64()?,
                    pages: r.u32s()?,
                };
                r.end()?;
                m
            }
            T_ANNOUNCE => {
                let mut r = R {
                    b: body,
                    what: "Announce",
                };
                let m = Message::Announce {
                    client_address: r.str()?,
                };
                r.end()?;
                m
            }
            T_TOPOLOGY => {
                let mut r = R {
                    b: body,
                    what: "Topology",
                };
                let epoch = r.u64()?;
                let primary = Some(r.str()?).filter(|p| !p.is_empty());
                let n = r.u32()? as usize;
                if n > MAX_TOPOLOGY_MEMBERS {
                    return Err(ProtocolError::Malformed("Topology"));
                }
                let standbys = (0..n).map(|_| r.str()).collect::<Result<Vec<_>, _>>()?;
                r.end()?;
                Message::Topology(Topology {
                    epoch,
                    primary,
                    standbys,
                })
            }
            other => return Err(ProtocolError::UnknownType(other)),
        };
        Ok((msg, 4 + len))
    }
}

/// Why two Hellos do not fit together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloMismatch {
    /// Different protocol versions.
    #[error("peer {peer} speaks replication protocol version {theirs}, this node speaks {ours}; run the same hadr version on both")]
    Version {
        /// The peer's address.
        peer: String,
        /// Its version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// Different databases.
    #[error("peer {peer} holds database {theirs}, this node holds {ours}; a standby must be cloned from its primary")]
    OtherDatabase {
        /// The peer's address.
        peer: String,
        /// Its database id.
        theirs: String,
        /// Ours.
        ours: String,
    },
}

impl HelloMismatch {
    /// The refusal to send for it.
    pub fn refuse(&self) -> Refuse {
        let code = match self {
            HelloMismatch::Version { .. } => RefuseCode::Version,
            HelloMismatch::OtherDatabase { .. } => RefuseCode::OtherDatabase,
        };
        Refuse::new(code, self.to_string())
    }
}

/// Check a peer's Hello against ours: same protocol version, same database.
pub fn check_hello(ours: &Hello, theirs: &Hello) -> Result<(), HelloMismatch> {
    if theirs.version != ours.version {
        return Err(HelloMismatch::Version {
            peer: theirs.address.clone(),
            theirs: theirs.version,
            ours: ours.version,
        });
    }
    if !ours.database_id.is_empty()
        && !theirs.database_id.is_empty()
        && theirs.database_id != ours.database_id
    {
        return Err(HelloMismatch::OtherDatabase {
            peer: theirs.address.clone(),
            theirs: theirs.database_id.clone(),
            ours: ours.database_id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            role: PeerRole::Standby,
            database_id: "db".into(),
            epoch: 3,
            epoch_history: vec![
                EpochStart {
                    epoch: 1,
                    start_lsn: 0,
                },
                EpochStart {
                    epoch: 3,
                    start_lsn: 77,
                },
            ],
            lsn: 1234,
            address: "127.0.0.1:9000".into(),
        }
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(hello()),
            Message::Refuse(Refuse::new(RefuseCode::NeedsClone, "no")),
            Message::Refuse(Refuse::new(RefuseCode::NotPrimary, "handed over")),
            Message::Refuse(Refuse::new(RefuseCode::TlsRequired, "use TLS")),
            Message::Refuse(Refuse::new(RefuseCode::Version, "old")),
            Message::Records {
                start_lsn: 99,
                bytes: vec![1, 2, 3],
            },
            Message::Ack {
                received: 1,
                flushed: 2,
                replayed: 3,
            },
            Message::Heartbeat {
                now_micros: 5,
                end_lsn: 6,
                peer_window_end_micros: 7,
            },
            Message::CloneRequest,
            Message::CloneStart {
                database_id: "x".into(),
                epoch_history: vec![],
                epoch: 1,
                lsn: 2,
                page_size: 4096,
                pages: 10,
            },
            Message::ClonePages {
                first_pgno: 1,
                data: vec![0; 4096],
            },
            Message::ScatteredPages {
                pgnos: vec![3, 9],
                data: vec![7; 2 * 512],
            },
            Message::CloneEnd,
            Message::TakeoverRequest,
            Message::TakeoverReady { end_lsn: 42 },
            Message::RewindRequest {
                from_lsn: 7,
                pages: vec![1, 5, 9],
            },
            Message::Announce {
                client_address: "10.0.0.2:5433".into(),
            },
            Message::Topology(Topology {
                epoch: 4,
                primary: Some("[::1]:5433".into()),
                standbys: vec!["b:5433".into(), "c:5433".into()],
            }),
            Message::Topology(Topology::default()),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(Message::decode(&b), Ok((m.clone(), b.len())));
        }
    }

    #[test]
    fn other_version_and_database_are_refused_clearly() {
        for v in [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
            let mut other = hello();
            other.version = v;
            let e = check_hello(&hello(), &other).unwrap_err();
            assert!(e.to_string().contains(&format!("version {v}")));
            assert_eq!(e.refuse().code, RefuseCode::Version);
        }
        let mut other = hello();
        other.database_id = "another".into();
        let e = check_hello(&hello(), &other).unwrap_err();
        assert!(e.to_string().contains("another"));
        assert_eq!(e.refuse().code, RefuseCode::OtherDatabase);
        assert!(check_hello(&hello(), &hello()).is_ok());
    }

    /// A version-2 peer decodes a Refuse as a bare reason string and rejects
    /// trailing bytes: the version refusal must keep exactly that layout.
    #[test]
    fn the_version_refusal_is_readable_by_a_version_2_peer() {
        let b = Message::Refuse(Refuse::new(RefuseCode::Version, "speak 3")).encode();
        let body = &b[5..b.len() - 4];
        assert_eq!(b[4], T_REFUSE);
        assert_eq!(&body[..4], &7u32.to_be_bytes());
        assert_eq!(&body[4..], b"speak 3");
        // Every other refusal carries its code.
        let b = Message::Refuse(Refuse::new(RefuseCode::NeedsRewind, "x")).encode();
        assert_eq!(b[4], T_REFUSE_CODED);
    }

    /// A code added later (here `NotPrimary`, 9) reaches an older peer as a
    /// coded refusal it decodes: only the code is unknown to it, and an
    /// unknown code reads as `Other`, so no version bump is needed.
    #[test]
    fn an_unknown_refusal_code_reads_as_other_with_its_reason() {
        let b = Message::Refuse(Refuse::new(RefuseCode::NotPrimary, "gone")).encode();
        assert_eq!(b[4], T_REFUSE_CODED);
        assert_eq!(b[5], 9);
        let mut unknown = b.clone();
        unknown[5] = 200;
        let body_len = unknown.len() - 4;
        let crc = crc32c::crc32c(&unknown[4..body_len]);
        unknown[body_len..].copy_from_slice(&crc.to_be_bytes());
        match Message::decode(&unknown) {
            Ok((Message::Refuse(r), _)) => {
                assert_eq!(r.code, RefuseCode::Other);
                assert_eq!(r.reason, "gone");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A page count the frame cannot hold is refused before anything is allocated for it.
    #[test]
    fn an_oversized_page_count_is_malformed() {
        for (ty, what) in [
            (T_SCATTERED_PAGES, "ScatteredPages"),
            (T_REWIND_REQUEST, "RewindRequest"),
        ] {
            let mut w = W(vec![0; 4]);
            w.u8(ty);
            if ty == T_REWIND_REQUEST {
                w.u64(7);
            }
            w.u32(u32::MAX);
            w.u32(1);
            let crc = crc32c::crc32c(&w.0[4..]);
            w.u32(crc);
            let len = (w.0.len() - 4) as u32;
            w.0[0..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(Message::decode(&w.0), Err(ProtocolError::Malformed(what)));
        }
    }

    /// A hostile member count is refused before anything is allocated.
    #[test]
    fn an_oversized_topology_is_malformed() {
        let mut w = W(vec![0; 4]);
        w.u8(T_TOPOLOGY);
        w.u64(1);
        w.str("");
        w.u32((MAX_TOPOLOGY_MEMBERS + 1) as u32);
        for _ in 0..=MAX_TOPOLOGY_MEMBERS {
            w.str("x:1");
        }
        let crc = crc32c::crc32c(&w.0[4..]);
        w.u32(crc);
        let len = (w.0.len() - 4) as u32;
        w.0[0..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Message::decode(&w.0),
            Err(ProtocolError::Malformed("Topology"))
        );
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_detected(i in 0usize..17, bit in 0usize..10_000) {
            let b = samples()[i].encode();
            let bit = bit % (b.len() * 8);
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Message::decode(&c).map(|(m, _)| m) != Ok(samples()[i].clone()));
        }

        #[test]
        fn any_truncation_is_incomplete(i in 0usize..17, cut in 0usize..10_000) {
            let b = samples()[i].encode();
            let cut = cut % b.len();
            prop_assert!(matches!(Message::decode(&b[..cut]), Err(ProtocolError::Incomplete(_))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }
    }
}
