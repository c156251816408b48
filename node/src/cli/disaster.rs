//! `kizuna disaster …`: disaster mode from the terminal — declare and end (operators), care
//! profiles, safety checks (安否確認) and facility statuses (also on a node cut off from the
//! hub: they wait there and reach the hub when it returns), the board and its CSV export.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use kizuna_proto::common::{FacilityStatus, Operation, Supply};
use kizuna_proto::disaster::disaster_service_client::DisasterServiceClient;
use kizuna_proto::disaster::*;

use super::Target;
use super::user::{authed, channel, idempotency_key, time, token};

#[derive(Subcommand)]
pub enum DisasterCommand {
    /// Every disaster, those in force first.
    List,
    /// Declare a disaster (operators; facility admins for their own municipality if allowed).
    Declare {
        name: String,
        /// Comma-separated municipalities, e.g. 宇都宮市,鹿沼市.
        #[arg(long, value_delimiter = ',', required = true)]
        municipalities: Vec<String>,
    },
    /// End a disaster (whoever declared it, or an operator).
    End { disaster: u64 },
    /// Allow facility admins to declare disasters for their own municipality, or not (operators).
    Policy {
        #[arg(long, action = clap::ArgAction::Set)]
        admins_may_declare: bool,
    },
    /// Show or set a patient's municipality and life-support devices (the team).
    Profile {
        patient: u64,
        /// Set: the municipality the patient lives in.
        #[arg(long)]
        municipality: Option<String>,
        /// Set: comma-separated devices: home-oxygen, ventilator, suction, dialysis (none: "").
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<String>>,
    },
    /// Record a patient's safety check (the patient's team). DISASTER 0: this node knows of none
    /// yet (cut off before the declaration reached it); the hub files it under the disaster
    /// covering the patient's municipality.
    Check {
        disaster: u64,
        patient: u64,
        /// safe, needs-help, unreachable or evacuated.
        #[arg(long)]
        status: String,
        /// With needs-help: comma-separated power, oxygen, medicine, evacuation, care.
        #[arg(long, value_delimiter = ',')]
        needs: Vec<String>,
        /// With evacuated: where to.
        #[arg(long, default_value = "")]
        to: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Report a facility's status (its staff, or an operator).
    Facility {
        disaster: u64,
        facility: u64,
        /// operating, limited or closed.
        #[arg(long)]
        operation: String,
        /// normal, limited or out.
        #[arg(long, default_value = "normal")]
        power: String,
        #[arg(long, default_value = "normal")]
        water: String,
        #[arg(long, default_value = "normal")]
        staff: String,
        /// Beds (or visits a day) still available.
        #[arg(long, default_value_t = 0)]
        available: u32,
        #[arg(long)]
        evacuees: bool,
        #[arg(long)]
        new_patients: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The board: counts per municipality and facility, patients most urgent first.
    Board {
        disaster: u64,
        #[arg(long)]
        municipality: Option<String>,
        /// Only patients whose team includes this facility's staff.
        #[arg(long)]
        facility: Option<u64>,
        /// unchecked, safe, needs-help, unreachable or evacuated.
        #[arg(long)]
        status: Option<String>,
        /// Only patients who depend on power or oxygen.
        #[arg(long)]
        life_support: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Every patient's row as CSV for the prefecture's disaster office (operators; audited).
    Export {
        disaster: u64,
        /// Where to write it (default: the suggested file name, here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(target: &Target, cmd: DisasterCommand) -> anyhow::Result<()> {
    let t = token()?;
    // An export holds every patient of the disaster's area: more than tonic's 4 MiB default.
    let mut c = DisasterServiceClient::new(channel(target).await?).max_decoding_message_size(256 << 20);
    match cmd {
        DisasterCommand::List => list(&mut c, &t).await,
        DisasterCommand::Declare { name, municipalities } => {
            let req =
                DeclareDisasterRequest { idempotency_key: idempotency_key(), name, municipalities, started_at: None };
            let d = c.declare_disaster(authed(req, &t)?).await?.into_inner().disaster.context("no disaster")?;
            println!("災害 {} 「{}」を宣言しました ({})", d.disaster_id, d.name, d.municipalities.join("・"));
            Ok(())
        }
        DisasterCommand::End { disaster } => {
            let req = EndDisasterRequest { idempotency_key: idempotency_key(), disaster_id: disaster };
            c.end_disaster(authed(req, &t)?).await?;
            println!("災害 {disaster} を終了しました");
            Ok(())
        }
        DisasterCommand::Policy { admins_may_declare } => {
            let req = SetDisasterPolicyRequest { idempotency_key: idempotency_key(), admins_may_declare };
            c.set_disaster_policy(authed(req, &t)?).await?;
            println!("施設管理者による災害宣言: {}", if admins_may_declare { "許可" } else { "不可" });
            Ok(())
        }
        DisasterCommand::Profile { patient, municipality, devices } => {
            profile(&mut c, &t, patient, (municipality, devices)).await
        }
        cmd @ (DisasterCommand::Check { .. } | DisasterCommand::Facility { .. }) => record(&mut c, &t, cmd).await,
        cmd => show(&mut c, &t, cmd).await,
    }
}

/// A safety check or a facility status, said recorded or pending.
async fn record(
    c: &mut DisasterServiceClient<tonic::transport::Channel>,
    t: &str,
    cmd: DisasterCommand,
) -> anyhow::Result<()> {
    match cmd {
        DisasterCommand::Check { disaster, patient, status, needs, to, note } => {
            let check =
                SafetyCheck { status: safety_status(&status)? as i32, needs: needs_of(&needs)?, evacuated_to: to };
            let req = RecordSafetyCheckRequest {
                idempotency_key: idempotency_key(),
                disaster_id: disaster,
                patient_id: patient,
                check: Some(check),
                note,
            };
            let o = c.record_safety_check(authed(req, t)?).await?.into_inner().observation.context("no record")?;
            say_recorded(&o);
            Ok(())
        }
        DisasterCommand::Facility {
            disaster,
            facility,
            operation,
            power,
            water,
            staff,
            available,
            evacuees,
            new_patients,
            note,
        } => {
            let status = FacilityStatus {
                operation: operation_of(&operation)? as i32,
                power: supply(&power)? as i32,
                water: supply(&water)? as i32,
                staff: supply(&staff)? as i32,
                available,
                accepts_evacuees: evacuees,
                accepts_patients: new_patients,
                ..Default::default()
            };
            let req = ReportFacilityStatusRequest {
                idempotency_key: idempotency_key(),
                disaster_id: disaster,
                facility_id: facility,
                status: Some(status),
                note,
            };
            let o = c.report_facility_status(authed(req, t)?).await?.into_inner().observation.context("no record")?;
            say_recorded(&o);
            Ok(())
        }
        _ => bail!("not a record"),
    }
}

/// The board, or its export.
async fn show(
    c: &mut DisasterServiceClient<tonic::transport::Channel>,
    t: &str,
    cmd: DisasterCommand,
) -> anyhow::Result<()> {
    match cmd {
        DisasterCommand::Board { disaster, municipality, facility, status, life_support, limit } => {
            let status = status.as_deref().map(status_filter).transpose()?.unwrap_or(StatusFilter::Unspecified) as i32;
            let req = GetBoardRequest {
                disaster_id: disaster,
                municipality,
                facility_id: facility,
                status,
                life_support_only: life_support,
                page_size: limit,
            };
            let b = c.get_board(authed(req, t)?).await?.into_inner();
            print!("{}", board_text(&b));
            Ok(())
        }
        DisasterCommand::Export { disaster, out } => {
            let e = c.export_board(authed(ExportBoardRequest { disaster_id: disaster }, t)?).await?.into_inner();
            let path = out.unwrap_or_else(|| PathBuf::from(&e.filename));
            std::fs::write(&path, &e.csv).with_context(|| format!("writing {}", path.display()))?;
            println!("{} 人分を {} に書き出しました（閲覧は監査ログに残ります）", e.patients, path.display());
            Ok(())
        }
        _ => bail!("not a board"),
    }
}

async fn list(c: &mut DisasterServiceClient<tonic::transport::Channel>, t: &str) -> anyhow::Result<()> {
    let l = c.list_disasters(authed(ListDisastersRequest {}, t)?).await?.into_inner();
    if !l.stale_reason.is_empty() {
        println!("(このノードの情報は古い可能性があります: {})", l.stale_reason);
    }
    if l.disasters.is_empty() {
        println!("災害は宣言されていません");
    }
    for d in l.disasters {
        let state = if d.ended_at.is_some() { "終了" } else { "発令中" };
        println!(
            "{:<5} {state}  {}  {}  ({})",
            d.disaster_id,
            time(&d.started_at),
            d.name,
            d.municipalities.join("・")
        );
    }
    Ok(())
}

async fn profile(
    c: &mut DisasterServiceClient<tonic::transport::Channel>,
    t: &str,
    patient: u64,
    (municipality, devices): (Option<String>, Option<Vec<String>>),
) -> anyhow::Result<()> {
    let current = c.get_care_profile(authed(GetCareProfileRequest { patient_id: patient }, t)?).await?.into_inner();
    let mut p = current.profile.unwrap_or_default();
    if municipality.is_some() || devices.is_some() {
        if let Some(m) = municipality {
            p.municipality = m;
        }
        if let Some(d) = devices {
            p.devices = d
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| device(d).map(|d| d as i32))
                .collect::<anyhow::Result<_>>()?;
        }
        let req =
            SetCareProfileRequest { idempotency_key: idempotency_key(), patient_id: patient, profile: Some(p.clone()) };
        c.set_care_profile(authed(req, t)?).await?;
    }
    let devices: Vec<&str> = p.devices.iter().map(|d| device_label(*d)).collect();
    println!("患者 {patient}: 市町村 {}  医療機器 {}", or_dash(&p.municipality), or_dash(&devices.join("・")));
    Ok(())
}

fn say_recorded(o: &Observation) {
    if o.state == RecordState::Pending as i32 {
        println!("このノードに記録しました。ハブへの反映を待っています（ハブとの接続が戻ると自動で送られます）");
    } else {
        println!("記録しました");
    }
}

fn board_text(b: &GetBoardResponse) -> String {
    let mut s = String::new();
    if let Some(d) = &b.disaster {
        s += &format!("{} ({})\n", d.name, d.municipalities.join("・"));
    }
    if !b.stale_reason.is_empty() {
        s += &format!("(このノードの情報は古い可能性があります: {})\n", b.stale_reason);
    }
    if b.pending_here > 0 {
        s += &format!("このノードにハブへの反映待ちの記録が {} 件あります\n", b.pending_here);
    }
    let line = |name: &str, t: &Tally| {
        format!(
            "  {name:<16} 患者 {:>4}  確認済 {:>4}  要支援 {:>3} (電源 {} 酸素 {} 薬 {} 避難 {} 介護 {})  連絡不通 {:>3}  避難済 {:>3}  生命維持 未確認 {}/{}\n",
            t.patients,
            t.checked,
            t.needs_help,
            t.needs_power,
            t.needs_oxygen,
            t.needs_medicine,
            t.needs_evacuation,
            t.needs_care,
            t.unreachable,
            t.evacuated,
            t.life_support_unchecked,
            t.life_support
        )
    };
    if let Some(t) = &b.total {
        s += &line("合計", t);
    }
    for m in &b.municipalities {
        s += &line(&m.municipality, m.tally.as_ref().unwrap_or(&Tally::default()));
    }
    for f in &b.facilities {
        s += &line(&f.name, f.tally.as_ref().unwrap_or(&Tally::default()));
    }
    s += &format!("患者 ({} 人中 {} 人):\n", b.matching, b.patients.len());
    for p in &b.patients {
        let devices: Vec<&str> = p.devices.iter().map(|d| device_label(*d)).collect();
        let (state, when) = match &p.current {
            Some(o) => (observation_label(o), time(&o.observed_at)),
            None => ("未確認".to_owned(), String::new()),
        };
        s += &format!(
            "  {:<5} {:<10} {:<8} {:<10} {state} {when}\n",
            p.patient_id,
            p.name,
            p.municipality,
            devices.join("・")
        );
    }
    for f in &b.facility_statuses {
        let state = f.current.as_ref().map_or("未報告".to_owned(), observation_label);
        s += &format!("  施設 {:<5} {:<16} {}\n", f.facility_id, f.name, state);
    }
    s
}

fn observation_label(o: &Observation) -> String {
    use observation::Report;
    let pending = if o.state == RecordState::Pending as i32 { " [反映待ち]" } else { "" };
    let what = match &o.report {
        Some(Report::SafetyCheck(c)) => match SafetyStatus::try_from(c.status) {
            Ok(SafetyStatus::Safe) => "無事".to_owned(),
            Ok(SafetyStatus::NeedsHelp) => {
                let needs: Vec<&str> = c.needs.iter().map(|n| need_label(*n)).collect();
                format!("要支援 ({})", needs.join("・"))
            }
            Ok(SafetyStatus::Unreachable) => "連絡不通".to_owned(),
            Ok(SafetyStatus::Evacuated) => format!("避難済み ({})", c.evacuated_to),
            _ => "?".to_owned(),
        },
        Some(Report::FacilityStatus(f)) => {
            let op = match Operation::try_from(f.operation) {
                Ok(Operation::Operating) => "通常稼働",
                Ok(Operation::Limited) => "一部稼働",
                Ok(Operation::Closed) => "休止",
                _ => "?",
            };
            format!(
                "{op} 電気 {} 水 {} 職員 {} 空き {}",
                supply_label(f.power),
                supply_label(f.water),
                supply_label(f.staff),
                f.available
            )
        }
        None => String::new(),
    };
    format!("{what}{pending} {}", o.note)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "—" } else { s }
}

fn safety_status(s: &str) -> anyhow::Result<SafetyStatus> {
    Ok(match s {
        "safe" => SafetyStatus::Safe,
        "needs-help" => SafetyStatus::NeedsHelp,
        "unreachable" => SafetyStatus::Unreachable,
        "evacuated" => SafetyStatus::Evacuated,
        other => bail!("--status {other:?}: expected safe, needs-help, unreachable or evacuated"),
    })
}

fn status_filter(s: &str) -> anyhow::Result<StatusFilter> {
    Ok(match s {
        "unchecked" => StatusFilter::Unchecked,
        "safe" => StatusFilter::Safe,
        "needs-help" => StatusFilter::NeedsHelp,
        "unreachable" => StatusFilter::Unreachable,
        "evacuated" => StatusFilter::Evacuated,
        other => bail!("--status {other:?}: expected unchecked, safe, needs-help, unreachable or evacuated"),
    })
}

fn needs_of(needs: &[String]) -> anyhow::Result<Vec<i32>> {
    needs
        .iter()
        .map(|n| {
            Ok(match n.as_str() {
                "power" => Need::Power,
                "oxygen" => Need::Oxygen,
                "medicine" => Need::Medicine,
                "evacuation" => Need::Evacuation,
                "care" => Need::Care,
                other => bail!("--needs {other:?}: expected power, oxygen, medicine, evacuation or care"),
            } as i32)
        })
        .collect()
}

fn need_label(n: i32) -> &'static str {
    match Need::try_from(n) {
        Ok(Need::Power) => "電源",
        Ok(Need::Oxygen) => "酸素",
        Ok(Need::Medicine) => "薬",
        Ok(Need::Evacuation) => "避難",
        Ok(Need::Care) => "介護・看護",
        _ => "?",
    }
}

fn device(d: &str) -> anyhow::Result<Device> {
    Ok(match d {
        "home-oxygen" => Device::HomeOxygen,
        "ventilator" => Device::Ventilator,
        "suction" => Device::Suction,
        "dialysis" => Device::Dialysis,
        other => bail!("--devices {other:?}: expected home-oxygen, ventilator, suction or dialysis"),
    })
}

fn device_label(d: i32) -> &'static str {
    match Device::try_from(d) {
        Ok(Device::HomeOxygen) => "在宅酸素",
        Ok(Device::Ventilator) => "人工呼吸器",
        Ok(Device::Suction) => "吸引器",
        Ok(Device::Dialysis) => "在宅透析",
        _ => "?",
    }
}

fn operation_of(s: &str) -> anyhow::Result<Operation> {
    Ok(match s {
        "operating" => Operation::Operating,
        "limited" => Operation::Limited,
        "closed" => Operation::Closed,
        other => bail!("--operation {other:?}: expected operating, limited or closed"),
    })
}

fn supply(s: &str) -> anyhow::Result<Supply> {
    Ok(match s {
        "normal" => Supply::Normal,
        "limited" => Supply::Limited,
        "out" => Supply::Out,
        other => bail!("{other:?}: expected normal, limited or out"),
    })
}

fn supply_label(s: i32) -> &'static str {
    match Supply::try_from(s) {
        Ok(Supply::Normal) => "通常",
        Ok(Supply::Limited) => "制限",
        Ok(Supply::Out) => "なし",
        _ => "?",
    }
}
