//! `kizuna request …`: requests (リクエスト) to facilities from the terminal.

use anyhow::Context;
use clap::Subcommand;
use kizuna_proto::care_requests::care_request_service_client::CareRequestServiceClient;
use kizuna_proto::care_requests::*;

use super::Target;
use super::labels;
use super::user::{authed, channel, idempotency_key, time, token};

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

fn kind(name: &str) -> anyhow::Result<CareRequestKind> {
    CareRequestKind::from_str_name(&format!("CARE_REQUEST_KIND_{}", name.to_uppercase().replace('-', "_")))
        .filter(|k| *k != CareRequestKind::Unspecified)
        .with_context(|| format!("unknown request kind {name:?} (admission, discharge, home-visit, collaboration)"))
}

/// A request's first line: id, kind, title, when, who from (and their hub, if another), and
/// its patient.
fn heading(r: &CareRequest) -> String {
    let patient = match r.patient_id {
        Some(id) => format!("  患者 {} (#{id})", r.patient_name),
        // A request of another hub about one of its patients: their data stays there.
        None if r.about_patient => "  患者あり（送信元ハブで管理）".to_owned(),
        None => String::new(),
    };
    format!(
        "#{} [{}] {}  {} {} ({}){hub}{patient}",
        r.care_request_id,
        labels::care_request_kind(r.kind),
        r.title,
        time(&r.sent_at),
        r.from_name,
        r.from_facility,
        hub = labels::hub(&r.from_hub),
    )
}

fn print(r: &CareRequest, full: bool) {
    println!("{}", heading(r));
    if full {
        println!("  {}", r.details.replace('\n', "\n  "));
    }
    for x in &r.recipients {
        println!("{}", recipient_line(x));
    }
}

/// One recipient facility, its hub if another, and its answer.
fn recipient_line(x: &CareRequestRecipient) -> String {
    let by = if x.answered_by_name.is_empty() { String::new() } else { format!(" {}", x.answered_by_name) };
    let note = if x.note.is_empty() { String::new() } else { format!(" 「{}」", x.note) };
    let (hub, state) = (labels::hub(&x.facility_hub), labels::answer_state(x.state));
    format!("    → {}{hub} (#{}): {state}{by}{note}", x.facility_name, x.facility_id)
}

pub async fn run(target: &Target, cmd: RequestCommand) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = CareRequestServiceClient::new(channel(target).await?);
    let (sent, accept) = (matches!(cmd, RequestCommand::Sent), matches!(cmd, RequestCommand::Accept { .. }));
    match cmd {
        RequestCommand::Send { kind: k, to, title, details, patient } => {
            let req = SendCareRequestRequest {
                idempotency_key: idempotency_key(),
                kind: kind(&k)? as i32,
                patient_id: patient,
                title,
                details,
                facility_ids: to,
            };
            print(&c.send_care_request(authed(req, &t)?).await?.into_inner().care_request.unwrap_or_default(), false);
        }
        RequestCommand::Inbox | RequestCommand::Sent => {
            let r#box = if sent { CareRequestBox::Sent } else { CareRequestBox::Received } as i32;
            let mut page_token = String::new();
            let mut none = true;
            loop {
                let req = ListCareRequestsRequest { r#box, page_size: 200, page_token };
                let page = c.list_care_requests(authed(req, &t)?).await?.into_inner();
                none &= page.care_requests.is_empty();
                page.care_requests.iter().for_each(|r| print(r, false));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if none {
                println!("(no requests)");
            }
        }
        RequestCommand::Show { id } => {
            let got = c.get_care_request(authed(GetCareRequestRequest { care_request_id: id }, &t)?).await?;
            print(&got.into_inner().care_request.unwrap_or_default(), true);
        }
        RequestCommand::Accept { id, note } | RequestCommand::Decline { id, note } => {
            let req =
                AnswerCareRequestRequest { idempotency_key: idempotency_key(), care_request_id: id, accept, note };
            let answered = c.answer_care_request(authed(req, &t)?).await?.into_inner();
            print(&answered.care_request.unwrap_or_default(), false);
        }
        RequestCommand::Cancel { id } => {
            let req = CancelCareRequestRequest { idempotency_key: idempotency_key(), care_request_id: id };
            let cancelled = c.cancel_care_request(authed(req, &t)?).await?.into_inner();
            print(&cancelled.care_request.unwrap_or_default(), false);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_of_another_hub_shows_its_hub() {
        let x = CareRequestRecipient {
            facility_id: 9,
            facility_name: "前橋訪問看護".into(),
            facility_hub: "gunma".into(),
            state: AnswerState::Accepted as i32,
            answered_by_name: "佐藤".into(),
            ..Default::default()
        };
        assert_eq!(recipient_line(&x), "    → 前橋訪問看護［gunma］ (#9): 受諾 佐藤");
    }

    #[test]
    fn a_request_of_another_hub_shows_its_hub_and_only_that_it_is_about_a_patient() {
        let r = CareRequest {
            care_request_id: 5,
            title: "訪問看護のご依頼".into(),
            from_name: "佐藤 医師".into(),
            from_facility: "小山在宅クリニック".into(),
            from_hub: "tochigi".into(),
            about_patient: true,
            ..Default::default()
        };
        let line = heading(&r);
        assert!(line.contains("佐藤 医師 (小山在宅クリニック)［tochigi］  患者あり"), "{line}");
    }
}
