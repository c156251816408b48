// Disaster mode on a patient's timeline, for its team: where the patient lives and which
// devices their life depends on (the care profile, which puts them on a disaster's board and
// first when they use such a device), and, while a disaster is in force, the patient's safety
// check (the way a family, which has no board, records one).
import { useState } from "preact/hooks";
import { Device, type CareProfile, type Disaster, type Observation } from "../../gen/kizuna/disaster/v1/disaster_service_pb";
import { ErrorBox, Notice, useAction, useLoad } from "../common";
import { DEVICES, safetyLine, when } from "../labels";
import { PendingBadge, SafetyCheckForm, recordedNote } from "./forms";
import { useInForce } from "./list";

const DEVICE_CHOICES = [Device.HOME_OXYGEN, Device.VENTILATOR, Device.SUCTION, Device.DIALYSIS];

export function PatientDisasterPanel({ patientId, name }: { patientId: bigint; name: string }) {
  const profile = useLoad((c) => c.disaster.getCareProfile({ patientId }), [patientId]);
  const active = useInForce();
  // Not loaded (or not the caller's to see): the timeline shows nothing of it.
  if (!profile.data) return null;
  const current = profile.data.profile;
  const covering = active.find((d) => current?.municipality && d.municipalities.includes(current.municipality)) ?? active[0];
  return (
    <div class="disaster-panel">
      {covering && <SafetyCheckPanel key={String(covering.disasterId)} disaster={covering} patientId={patientId} name={name} />}
      <CareProfileEditor patientId={patientId} profile={current} done={profile.reload} />
    </div>
  );
}

/** 「災害時の情報：宇都宮市・在宅酸素」, opened to edit (the form keeps what was typed). */
function CareProfileEditor({ patientId, profile, done }: { patientId: bigint; profile?: CareProfile; done: () => void }) {
  const [municipality, setMunicipality] = useState(profile?.municipality ?? "");
  const [devices, setDevices] = useState<Device[]>(profile?.devices ?? []);
  const [saved, setSaved] = useState(false);
  const save = useAction("災害時の情報の保存", (c, key, m: string, d: Device[]) =>
    c.disaster.setCareProfile({ idempotencyKey: key, patientId, profile: { municipality: m, devices: d } }),
  );
  const toggle = (device: Device, on: boolean) => {
    setSaved(false);
    setDevices(on ? [...devices.filter((d) => d !== device), device].sort() : devices.filter((d) => d !== device));
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await save.run(municipality.trim(), devices)) (setSaved(true), done());
  };
  const summary = [profile?.municipality || "市町村未設定", ...(profile?.devices ?? []).map((d) => DEVICES[d])].join("・");
  return (
    <details class="card compact">
      <summary>災害時の情報：{summary}</summary>
      <form onSubmit={submit} aria-label="災害時の情報">
        <p class="muted">災害モードでは、この市町村の患者として災害ボードに載ります。医療機器を使う患者は安否確認で優先されます。</p>
        <label>
          住んでいる市町村
          <input maxLength={40} placeholder="例：宇都宮市" value={municipality} onInput={(e) => (setSaved(false), setMunicipality(e.currentTarget.value))} />
        </label>
        <fieldset>
          <legend>使っている医療機器</legend>
          {DEVICE_CHOICES.map((d) => (
            <label class="check">
              <input type="checkbox" checked={devices.includes(d)} onChange={(e) => toggle(d, e.currentTarget.checked)} />
              {DEVICES[d]}
            </label>
          ))}
        </fieldset>
        <ErrorBox message={save.error} />
        {saved && <Notice>災害時の情報を保存しました。</Notice>}
        <button class="primary small" disabled={save.busy}>
          保存
        </button>
      </form>
    </details>
  );
}

/** The patient's current safety check in a disaster in force, and recording a new one. */
function SafetyCheckPanel({ disaster, patientId, name }: { disaster: Disaster; patientId: bigint; name: string }) {
  const history = useLoad(
    (c) => c.disaster.listObservations({ disasterId: disaster.disasterId, subject: { case: "patientId", value: patientId } }),
    [disaster.disasterId, patientId],
    (e) => e.kind.case === "disasterObserved" && e.kind.value === disaster.disasterId,
  );
  const [recorded, setRecorded] = useState<string | null>(null);
  const [formKey, setFormKey] = useState(0);
  const latest = newest(history.data?.observations ?? []);
  const check = latest?.report.case === "safetyCheck" ? latest.report.value : undefined;
  const done = (o: Observation | undefined) => {
    setRecorded(recordedNote(o));
    // A fresh form for the next record.
    setFormKey(formKey + 1);
    history.reload();
  };
  return (
    <details class="card compact disaster-check">
      <summary>
        安否確認（{disaster.name}）：{safetyLine(check)}
        <PendingBadge observation={latest} />
      </summary>
      {latest && (
        <p class="muted">
          {when(latest.observedAt)} {latest.authorName}
          {latest.note && `「${latest.note}」`}
        </p>
      )}
      {recorded && <Notice>{recorded}</Notice>}
      <SafetyCheckForm key={formKey} disasterId={disaster.disasterId} patientId={patientId} name={name} done={done} />
    </details>
  );
}

/** The current one of a subject's records: the latest observed (the hub's merge rule, by time). */
function newest(observations: Observation[]): Observation | undefined {
  let best: Observation | undefined;
  for (const o of observations) {
    const t = (x: Observation) => (x.observedAt ? x.observedAt.seconds * 1_000_000_000n + BigInt(x.observedAt.nanos) : 0n);
    if (!best || t(o) >= t(best)) best = o;
  }
  return best;
}
