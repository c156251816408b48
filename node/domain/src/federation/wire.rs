//! What one hub tells another: the messages of a hub-to-hub stream and their byte encoding.
//!
//! A message names accounts by login relative to the stream ([`Party`]): the sender's own
//! accounts, the receiver's own accounts, or a third hub's. Logins never change and are unique
//! on their hub, so `login@hub` names an account across the federation (as ruma's ids name their
//! server) and no hub needs to know another's numeric ids for people. Rooms are named by their
//! id on their home hub: only the home hub creates them.
//!
//! The encoding is a stored and exchanged format: a version byte, then postcard (positional).
//! New variants go at the end; a changed shape is a new [`WIRE_VERSION`].

use serde::{Deserialize, Serialize};

use super::map::FacilityCopy;
use super::names::HubName;
use super::requests::{Reply, RequestCopy};
use crate::attachments::BlobHash;
use crate::model::{AttachmentId, FacilityId, Profession, RequestId, Role, RoomId};

/// The newest version of the message encoding this build writes and reads. Version 2 adds the
/// variants of posts with files (`Message::PostWithFiles`, `RoomWrite::PostWithFiles`) and
/// changes nothing else: a message is written with the oldest version that has everything it
/// uses, so a hub still on version 1 reads every other message, and keeps one with files
/// queued (its batch stops before it) until it is upgraded, instead of skipping it.
pub const WIRE_VERSION: u8 = 2;
/// The oldest version this build reads.
pub const OLDEST_WIRE_VERSION: u8 = 1;

/// An account, named relative to the stream that carries the message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Party {
    /// An account of the hub that sent the message.
    Sender(String),
    /// An account of the hub that receives the message.
    Receiver(String),
    /// An account of a third hub.
    Other { hub: HubName, login: String },
}

/// The minimal profile of a member that crosses hubs: never contact data, sessions or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub party: Party,
    pub display_name: String,
    pub facility_name: String,
    pub profession: Profession,
}

/// What kind of room a copy is, with what its members need to show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyKind {
    /// A patient's timeline: the patient's name and kana (the team must know whom it cares for).
    PatientTimeline {
        patient_name: String,
        patient_kana: String,
    },
    /// A sub-room of the timeline `parent` (home id).
    SubRoom {
        parent: RoomId,
        patient_name: String,
        name: String,
    },
    Group {
        name: String,
    },
    /// A 1:1 connection room.
    Connection,
}

impl CopyKind {
    /// The same kind without the patient's name: what a dropped copy keeps.
    pub fn without_patient(&self) -> Self {
        match self {
            CopyKind::PatientTimeline { .. } => {
                CopyKind::PatientTimeline { patient_name: String::new(), patient_kana: String::new() }
            }
            CopyKind::SubRoom { parent, name, .. } => {
                CopyKind::SubRoom { parent: *parent, patient_name: String::new(), name: name.clone() }
            }
            other => other.clone(),
        }
    }
}

/// A member of a room as the home hub has it (the membership's state, not read markers: read
/// state stays on the reader's own hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCopy {
    pub profile: Profile,
    pub role: Role,
    /// Waiting for an owner's approval (invited by a member, or asked to join).
    pub pending: bool,
}

/// A room as its home hub has it: sent to every hub with a member in it whenever its
/// membership changes, and to a hub that just lost its last member (then without them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCopy {
    /// The room's id on its home hub (the sender).
    pub room: RoomId,
    pub kind: CopyKind,
    pub members: Vec<MemberCopy>,
}

/// A post as the home hub has it now (new, edited, deleted or acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostCopy {
    /// The room's id on its home hub (the sender).
    pub room: RoomId,
    pub seq: u64,
    pub author: Party,
    /// Empty once deleted (the history stays on the home hub, for its audit).
    pub text: String,
    pub reply_to: Option<u64>,
    pub mentions: Vec<Party>,
    pub posted_at_ms: u64,
    pub edited: bool,
    pub deleted: bool,
    pub acks: Vec<Party>,
}

/// A blob as another hub names it: its hash and size (its bytes are fetched, never sent in a
/// message: see `attachments::Fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizedBlob {
    pub hash: BlobHash,
    pub size: u64,
}

/// A file of a post, as the hub that has its bytes describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCopy {
    /// The attachment on the sending hub: what the receiver asks for when it fetches the bytes.
    pub id: AttachmentId,
    pub name: String,
    /// As the sender detected it from the bytes (the receiver detects it again).
    pub content_type: String,
    pub file: SizedBlob,
    /// A photo's thumbnails, small and medium.
    pub thumbnails: Option<(SizedBlob, SizedBlob)>,
}

/// A write by a member of a room whose home is another hub, decided there by the same rules
/// as a local member's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomWrite {
    Post {
        text: String,
        reply_to: Option<u64>,
        mentions: Vec<Party>,
    },
    Edit {
        seq: u64,
        text: String,
    },
    Delete {
        seq: u64,
    },
    Ack {
        seq: u64,
    },
    Invite {
        invitee: Party,
        role: Role,
    },
    Approve {
        account: Party,
    },
    Leave,
    /// A post with files: the home hub fetches their bytes from the member's hub.
    PostWithFiles {
        text: String,
        reply_to: Option<u64>,
        mentions: Vec<Party>,
        files: Vec<FileCopy>,
    },
}

/// One message of a hub-to-hub stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Home → member hub: a room's kind and members; the receiver keeps (or drops) its copy.
    Room(RoomCopy),
    /// Home → member hub: one post as it is now.
    Post(PostCopy),
    /// Member → home hub: a write of the sender's member `author` to the receiver's room
    /// `room`. `ticket` names it on the sender (its "sending" entry) until it is answered.
    Submit { room: RoomId, author: String, ticket: u64, write: RoomWrite },
    /// Home → member hub: the write `ticket` was applied (for a post: as `seq`, which the
    /// [`Message::Post`] that follows carries).
    Accepted { ticket: u64, seq: Option<u64> },
    /// Home → member hub: the write `ticket` was refused, with the home hub's reason.
    Refused { ticket: u64, reason: String },
    /// Member → home hub: the receiver's room `room` names the sender's `login`, who is not an
    /// active professional there: the home hub removes that member.
    NoSuchMember { room: RoomId, login: String },
    /// Member → home hub: the current profile of a member in one of the receiver's rooms.
    Profile(Profile),
    /// The sender's professional (`from`, with their minimal profile) asks the receiver's
    /// professional `to` for a connection. Accepting opens the 1:1 room on the receiver, its
    /// home.
    ConnectionRequest { from: Profile, to: String },
    /// The sender's professional `by` declined or blocked the connection with the receiver's
    /// `other`: the receiver records it as declined and, as the room's home, closes the room.
    ConnectionEnded { by: String, other: String },
    /// A hub sharing its resource map: one of its approved facilities, as it is now.
    Facility(FacilityCopy),
    /// The sender stopped sharing its resource map with the receiver: its facilities leave
    /// the receiver's map.
    DirectoryWithdrawn,
    /// A request of the sender to facilities of the receiver (only those: each hub gets the
    /// recipients that are its own).
    Request(RequestCopy),
    /// The receiver's request `request` was answered for the sender's facility `facility` (its
    /// id on the sender), or refused by the sender's hub.
    RequestAnswered { request: RequestId, facility: FacilityId, reply: Reply },
    /// The sender's `from` cancelled its request `request`: what is still pending is cancelled.
    RequestCancelled { request: RequestId, from: String },
    /// Home → member hub: a post with files, as it is now; the receiver fetches the files'
    /// bytes from the sender.
    PostWithFiles { post: PostCopy, files: Vec<FileCopy> },
}

/// Why bytes are not a message this build reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("message version {0}, but this build reads version {WIRE_VERSION}")]
    UnknownVersion(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl Message {
    /// The version byte, then the message.
    pub fn encode(&self) -> Vec<u8> {
        // Postcard fails only for types it cannot size (e.g. iterators of unknown length) and
        // when the output is full; a Vec grows and every field here is plain data.
        postcard::to_extend(self, vec![self.version()]).expect("plain data always encodes into a Vec")
    }

    /// The oldest version that has everything this message uses.
    fn version(&self) -> u8 {
        match self {
            Message::PostWithFiles { .. } | Message::Submit { write: RoomWrite::PostWithFiles { .. }, .. } => 2,
            _ => OLDEST_WIRE_VERSION,
        }
    }

    /// Exactly one message of a version this build reads.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes.split_first() {
            None => Err(WireError::Empty),
            Some((&version, body)) if (OLDEST_WIRE_VERSION..=WIRE_VERSION).contains(&version) => {
                match postcard::take_from_bytes(body) {
                    Ok((message, [])) => Ok(message),
                    Ok((_, rest)) => Err(WireError::Malformed(format!("{} stray bytes", rest.len()))),
                    Err(e) => Err(WireError::Malformed(e.to_string())),
                }
            }
            Some((&version, _)) => Err(WireError::UnknownVersion(version)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_other_versions() {
        let message = Message::Submit {
            room: RoomId(7),
            author: "sato".into(),
            ticket: 42,
            write: RoomWrite::Post {
                text: "血圧安定".into(),
                reply_to: None,
                mentions: vec![Party::Receiver("yamada".into())],
            },
        };
        let bytes = message.encode();
        assert_eq!(bytes[0], 1, "written as version 1: a hub not yet upgraded reads it");
        assert_eq!(Message::decode(&bytes), Ok(message));
        let mut other = bytes.clone();
        other[0] = WIRE_VERSION + 1;
        assert_eq!(Message::decode(&other), Err(WireError::UnknownVersion(WIRE_VERSION + 1)));
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(Message::decode(&longer), Err(WireError::Malformed(_))));
        assert_eq!(Message::decode(&[]), Err(WireError::Empty));
    }

    #[test]
    fn a_message_with_files_is_version_2_so_a_version_1_hub_keeps_it_queued() {
        let write = RoomWrite::PostWithFiles { text: String::new(), reply_to: None, mentions: vec![], files: vec![] };
        let message = Message::Submit { room: RoomId(7), author: "sato".into(), ticket: 1, write };
        let bytes = message.encode();
        assert_eq!(bytes[0], 2);
        assert_eq!(Message::decode(&bytes), Ok(message));
    }
}
