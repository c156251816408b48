//! `kizuna request …`: requests (リクエスト) to facilities from the terminal.

use anyhow::Context;
use clap::Subcommand;
use kizuna_proto::collab::care_requests_client::CareRequestsClient;
use kizuna_proto::collab::*;

use super::Target;
use super::collab::{authed, channel, request_id, time, token};

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Send one request to several facilities.
    Send {
        /// admission (入院), discharge (退院), home-visit (往診) or collaboration (連携).
        #[arg(long)]
        kind: String,
        /// Comma-separated facility ids.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<u64>,
        #[arg(long)]
        title: String,
        #[arg(long)]
        details: String,
        /// The patient it is about (you must be in the patient's team).
        #[arg(long)]
        patient: Option<u64>,
    },
    /// Requests to your facility, newest first.
    Inbox,
    /// Requests you sent, newest first, with each facility's answer.
    Sent,
    /// One request in full.
    Show { id: u64 },
    /// Accept for your facility.
    Accept {
        id: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Decline for your facility.
    Decline {
        id: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Withdraw your request from the facilities that have not answered.
    Cancel { id: u64 },
}

fn kind(name: &str) -> anyhow::Result<RequestKind> {
    RequestKind::from_str_name(&format!("REQUEST_KIND_{}", name.to_uppercase().replace('-', "_")))
        .filter(|k| *k != RequestKind::Unspecified)
        .with_context(|| format!("unknown request kind {name:?} (admission, discharge, home-visit, collaboration)"))
}

fn state_label(state: i32) -> &'static str {
    match AnswerState::try_from(state) {
        Ok(AnswerState::Pending) => "未回答",
        Ok(AnswerState::Accepted) => "受諾",
        Ok(AnswerState::Declined) => "辞退",
        Ok(AnswerState::Cancelled) => "取消",
        _ => "?",
    }
}

fn print(r: &CareRequest, full: bool) {
    let patient =
        if r.patient_id == 0 { String::new() } else { format!("  患者 {} (#{})", r.patient_name, r.patient_id) };
    println!(
        "#{} [{}] {}  {} {} ({}){patient}",
        r.care_request_id,
        r.kind_label,
        r.title,
        time(&r.sent_at),
        r.from_name,
        r.from_facility
    );
    if full {
        println!("  {}", r.details.replace('\n', "\n  "));
    }
    for x in &r.recipients {
        let by = if x.answered_by_name.is_empty() { String::new() } else { format!(" {}", x.answered_by_name) };
        let note = if x.note.is_empty() { String::new() } else { format!(" 「{}」", x.note) };
        println!("    → {} (#{}): {}{by}{note}", x.facility_name, x.facility_id, state_label(x.state));
    }
}

pub async fn run(target: &Target, cmd: RequestCommand) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = CareRequestsClient::new(channel(target).await?);
    let (sent, accept) = (matches!(cmd, RequestCommand::Sent), matches!(cmd, RequestCommand::Accept { .. }));
    match cmd {
        RequestCommand::Send { kind: k, to, title, details, patient } => {
            let req = SendCareRequestRequest {
                request_id: request_id(),
                kind: kind(&k)? as i32,
                patient_id: patient.unwrap_or(0),
                title,
                details,
                facility_ids: to,
            };
            print(&c.send(authed(req, &t)?).await?.into_inner(), false);
        }
        RequestCommand::Inbox | RequestCommand::Sent => {
            let list =
                c.list(authed(ListCareRequestsRequest { sent, before_id: 0, limit: 0 }, &t)?).await?.into_inner();
            if list.requests.is_empty() {
                println!("(no requests)");
            }
            for r in &list.requests {
                print(r, false);
            }
        }
        RequestCommand::Show { id } => {
            print(&c.get(authed(GetCareRequestRequest { care_request_id: id }, &t)?).await?.into_inner(), true);
        }
        RequestCommand::Accept { id, note } | RequestCommand::Decline { id, note } => {
            let req = AnswerCareRequestRequest { request_id: request_id(), care_request_id: id, accept, note };
            print(&c.answer(authed(req, &t)?).await?.into_inner(), false);
        }
        RequestCommand::Cancel { id } => {
            let req = CareRequestRef { request_id: request_id(), care_request_id: id };
            print(&c.cancel(authed(req, &t)?).await?.into_inner(), false);
        }
    }
    Ok(())
}
