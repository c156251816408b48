//! Disaster mode's messages: from the client's requests into the domain's types (refusing what
//! does not fit), and from the domain's types into answers.

use kizuna_proto::common as common_pb;
use kizuna_proto::disaster as pb;
use tonic::Status;

use super::super::convert::timestamp;
use super::super::shared::shown;
use kizuna_domain::HubView;
use kizuna_domain::disaster::board::{StatusFilter, Tally};
use kizuna_domain::disaster::{
    Device, Disaster, FacilityState, Need, Observation, Operation, Report, Safety, Subject, Supply,
};

fn unknown(field: &str, value: i32) -> Status {
    Status::invalid_argument(format!("{field}: unknown or unspecified value {value}"))
}

pub(super) fn device_from(d: i32) -> Result<Device, Status> {
    match pb::Device::try_from(d) {
        Ok(pb::Device::HomeOxygen) => Ok(Device::HomeOxygen),
        Ok(pb::Device::Ventilator) => Ok(Device::Ventilator),
        Ok(pb::Device::Suction) => Ok(Device::Suction),
        Ok(pb::Device::Dialysis) => Ok(Device::Dialysis),
        _ => Err(unknown("devices", d)),
    }
}

pub(super) fn device_to(d: Device) -> i32 {
    (match d {
        Device::HomeOxygen => pb::Device::HomeOxygen,
        Device::Ventilator => pb::Device::Ventilator,
        Device::Suction => pb::Device::Suction,
        Device::Dialysis => pb::Device::Dialysis,
    }) as i32
}

fn need_from(n: i32) -> Result<Need, Status> {
    match pb::Need::try_from(n) {
        Ok(pb::Need::Power) => Ok(Need::Power),
        Ok(pb::Need::Oxygen) => Ok(Need::Oxygen),
        Ok(pb::Need::Medicine) => Ok(Need::Medicine),
        Ok(pb::Need::Evacuation) => Ok(Need::Evacuation),
        Ok(pb::Need::Care) => Ok(Need::Care),
        _ => Err(unknown("needs", n)),
    }
}

fn need_to(n: Need) -> i32 {
    (match n {
        Need::Power => pb::Need::Power,
        Need::Oxygen => pb::Need::Oxygen,
        Need::Medicine => pb::Need::Medicine,
        Need::Evacuation => pb::Need::Evacuation,
        Need::Care => pb::Need::Care,
    }) as i32
}

pub(super) fn safety_from(check: Option<pb::SafetyCheck>) -> Result<Safety, Status> {
    let check = check.ok_or_else(|| Status::invalid_argument("check is required"))?;
    Ok(match pb::SafetyStatus::try_from(check.status) {
        Ok(pb::SafetyStatus::Safe) => Safety::Safe,
        Ok(pb::SafetyStatus::NeedsHelp) => {
            Safety::NeedsHelp { needs: check.needs.into_iter().map(need_from).collect::<Result<_, _>>()? }
        }
        Ok(pb::SafetyStatus::Unreachable) => Safety::Unreachable,
        Ok(pb::SafetyStatus::Evacuated) => Safety::Evacuated { to: check.evacuated_to },
        _ => return Err(unknown("check.status", check.status)),
    })
}

fn safety_to(s: &Safety) -> pb::SafetyCheck {
    let (status, needs, evacuated_to) = match s {
        Safety::Safe => (pb::SafetyStatus::Safe, vec![], String::new()),
        Safety::NeedsHelp { needs } => {
            (pb::SafetyStatus::NeedsHelp, needs.iter().map(|n| need_to(*n)).collect(), String::new())
        }
        Safety::Unreachable => (pb::SafetyStatus::Unreachable, vec![], String::new()),
        Safety::Evacuated { to } => (pb::SafetyStatus::Evacuated, vec![], to.clone()),
    };
    pb::SafetyCheck { status: status as i32, needs, evacuated_to }
}

fn supply_from(field: &str, s: i32) -> Result<Supply, Status> {
    match common_pb::Supply::try_from(s) {
        Ok(common_pb::Supply::Normal) => Ok(Supply::Normal),
        Ok(common_pb::Supply::Limited) => Ok(Supply::Limited),
        Ok(common_pb::Supply::Out) => Ok(Supply::Out),
        _ => Err(unknown(field, s)),
    }
}

fn supply_to(s: Supply) -> i32 {
    (match s {
        Supply::Normal => common_pb::Supply::Normal,
        Supply::Limited => common_pb::Supply::Limited,
        Supply::Out => common_pb::Supply::Out,
    }) as i32
}

pub(super) fn facility_state_from(status: Option<common_pb::FacilityStatus>) -> Result<FacilityState, Status> {
    let s = status.ok_or_else(|| Status::invalid_argument("status is required"))?;
    let operation = match common_pb::Operation::try_from(s.operation) {
        Ok(common_pb::Operation::Operating) => Operation::Operating,
        Ok(common_pb::Operation::Limited) => Operation::Limited,
        Ok(common_pb::Operation::Closed) => Operation::Closed,
        _ => return Err(unknown("status.operation", s.operation)),
    };
    Ok(FacilityState {
        operation,
        power: supply_from("status.power", s.power)?,
        water: supply_from("status.water", s.water)?,
        staff: supply_from("status.staff", s.staff)?,
        available: s.available,
        accepts_evacuees: s.accepts_evacuees,
        accepts_patients: s.accepts_patients,
    })
}

/// A facility's status as the resource map and the board show it; `pending`: recorded on this
/// node, waiting for the hub.
pub(crate) fn facility_status_view(o: &Observation, pending: bool) -> Option<common_pb::FacilityStatus> {
    let s = o.facility_state()?;
    let operation = match s.operation {
        Operation::Operating => common_pb::Operation::Operating,
        Operation::Limited => common_pb::Operation::Limited,
        Operation::Closed => common_pb::Operation::Closed,
    };
    Some(common_pb::FacilityStatus {
        operation: operation as i32,
        power: supply_to(s.power),
        water: supply_to(s.water),
        staff: supply_to(s.staff),
        available: s.available,
        accepts_evacuees: s.accepts_evacuees,
        accepts_patients: s.accepts_patients,
        observed_at: Some(timestamp(o.observed_at_ms)),
        disaster_id: o.disaster.0,
        pending,
    })
}

pub(super) fn status_filter_from(f: i32) -> Result<Option<StatusFilter>, Status> {
    Ok(match pb::StatusFilter::try_from(f) {
        Ok(pb::StatusFilter::Unspecified) => None,
        Ok(pb::StatusFilter::Unchecked) => Some(StatusFilter::Unchecked),
        Ok(pb::StatusFilter::Safe) => Some(StatusFilter::Safe),
        Ok(pb::StatusFilter::NeedsHelp) => Some(StatusFilter::NeedsHelp),
        Ok(pb::StatusFilter::Unreachable) => Some(StatusFilter::Unreachable),
        Ok(pb::StatusFilter::Evacuated) => Some(StatusFilter::Evacuated),
        Err(_) => return Err(unknown("status", f)),
    })
}

pub(super) fn disaster_view(d: &Disaster) -> pb::Disaster {
    pb::Disaster {
        disaster_id: d.id.0,
        name: d.name.clone(),
        municipalities: d.municipalities.clone(),
        started_at: Some(timestamp(d.started_at_ms)),
        ended_at: d.ended_at_ms.map(timestamp),
        declared_by: d.declared_by.0,
    }
}

/// An observation as answers show it; `pending`: it waits on this node for the hub.
pub(super) fn observation_view(hub: &impl HubView, o: &Observation, pending: bool) -> pb::Observation {
    use pb::observation::{Report as R, Subject as S};
    let subject = match o.subject {
        Subject::Patient(p) => S::PatientId(p.0),
        Subject::Facility(f) => S::FacilityId(f.0),
    };
    let report = match &o.report {
        Report::Safety(s) => Some(R::SafetyCheck(safety_to(s))),
        Report::Facility(_) => facility_status_view(o, pending).map(R::FacilityStatus),
    };
    let state = if pending { pb::RecordState::Pending } else { pb::RecordState::Applied };
    pb::Observation {
        observation_id: o.id.to_string(),
        disaster_id: o.disaster.0,
        subject: Some(subject),
        report,
        note: o.note.clone(),
        observed_at: Some(timestamp(o.observed_at_ms)),
        author_id: o.author.0,
        author_name: shown(hub.account(o.author)).map(|a| a.display_name).unwrap_or_default(),
        node_id: o.node,
        state: state as i32,
    }
}

pub(super) fn tally_view(t: &Tally) -> pb::Tally {
    let [needs_power, needs_oxygen, needs_medicine, needs_evacuation, needs_care] = t.needs;
    pb::Tally {
        patients: t.patients,
        checked: t.checked,
        safe: t.safe,
        needs_help: t.needs_help,
        unreachable: t.unreachable,
        evacuated: t.evacuated,
        life_support: t.life_support,
        life_support_unchecked: t.life_support_unchecked,
        needs_power,
        needs_oxygen,
        needs_medicine,
        needs_evacuation,
        needs_care,
    }
}
