// 災害モード's forms: a patient's safety check (安否確認), a facility's status, declaring a
// disaster. Records are accepted also by a node cut off from the hub's quorum; the answer says
// whether the hub has the record or this node holds it for the hub (RECORD_STATE_PENDING).
import { useState } from "preact/hooks";
import { Operation, Supply, type FacilityStatus } from "../../gen/kizuna/common/v1/types_pb";
import { Need, RecordState, SafetyStatus, type Disaster, type Observation, type SafetyCheck } from "../../gen/kizuna/disaster/v1/disaster_service_pb";
import { EnumOptions, ErrorBox, useAction } from "../common";
import { NEEDS, OPERATIONS, SAFETY, SUPPLIES } from "../labels";

/** What the page says once a record was taken: in the hub, or on this node waiting for it. */
export function recordedNote(o: Observation | undefined): string {
  return o?.state === RecordState.PENDING ? "このノードに記録しました。ハブへの反映を待っています。" : "記録しました。";
}

/** The 「反映待ち」 badge of a record this node holds for the hub. */
export function PendingBadge({ observation }: { observation?: Observation }) {
  return observation?.state === RecordState.PENDING ? <PendingTag /> : null;
}

/** The 「反映待ち」 badge itself (also of a facility's status on the map). */
export function PendingTag() {
  return (
    <span class="tag pending" title="このノードに記録済み。ハブへの反映を待っています">
      反映待ち
    </span>
  );
}

/** A safety check as the form sends it. */
type CheckInput = Pick<SafetyCheck, "status" | "needs" | "evacuatedTo">;

const STATUSES = [SafetyStatus.SAFE, SafetyStatus.NEEDS_HELP, SafetyStatus.UNREACHABLE, SafetyStatus.EVACUATED];
const NEED_CHOICES = [Need.POWER, Need.OXYGEN, Need.MEDICINE, Need.EVACUATION, Need.CARE];

/** A safety check of one patient, by the patient's team. */
export function SafetyCheckForm({
  disasterId,
  patientId,
  name,
  done,
}: {
  disasterId: bigint;
  patientId: bigint;
  name: string;
  done: (recorded: Observation | undefined) => void;
}) {
  const [status, setStatus] = useState(SafetyStatus.SAFE);
  const [needs, setNeeds] = useState<Need[]>([]);
  const [place, setPlace] = useState("");
  const [note, setNote] = useState("");
  const [invalid, setInvalid] = useState<string | null>(null);
  const record = useAction("安否の記録", (c, key, check: CheckInput, text: string) =>
    c.disaster.recordSafetyCheck({ idempotencyKey: key, disasterId, patientId, check, note: text }),
  );
  const toggle = (need: Need, on: boolean) => setNeeds(on ? [...needs.filter((n) => n !== need), need].sort() : needs.filter((n) => n !== need));
  const submit = async (e: Event) => {
    e.preventDefault();
    if (status === SafetyStatus.NEEDS_HELP && needs.length === 0) return setInvalid("必要な支援を1つ以上選んでください。");
    setInvalid(null);
    const check = {
      status,
      needs: status === SafetyStatus.NEEDS_HELP ? needs : [],
      evacuatedTo: status === SafetyStatus.EVACUATED ? place.trim() : "",
    };
    const answer = await record.run(check, note.trim());
    if (answer) done(answer.observation);
  };
  return (
    <form class="disaster-form" onSubmit={submit} aria-label={`${name}さんの安否を記録`}>
      <fieldset>
        <legend>状況</legend>
        {STATUSES.map((s) => (
          <label class="check">
            <input type="radio" name={`safety-${patientId}`} checked={status === s} onChange={() => setStatus(s)} />
            {SAFETY[s]}
          </label>
        ))}
      </fieldset>
      {status === SafetyStatus.NEEDS_HELP && (
        <fieldset>
          <legend>必要な支援</legend>
          {NEED_CHOICES.map((n) => (
            <label class="check">
              <input type="checkbox" checked={needs.includes(n)} onChange={(e) => toggle(n, e.currentTarget.checked)} />
              {NEEDS[n]}
            </label>
          ))}
        </fieldset>
      )}
      {status === SafetyStatus.EVACUATED && (
        <label>
          避難先
          <input required maxLength={100} placeholder="例：○○小学校 体育館" value={place} onInput={(e) => setPlace(e.currentTarget.value)} />
        </label>
      )}
      <label>
        メモ（任意）
        <textarea rows={2} maxLength={1000} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
      </label>
      <ErrorBox message={invalid ?? record.error} />
      <button class="primary" disabled={record.busy}>
        安否を記録する
      </button>
    </form>
  );
}

interface StatusForm {
  operation: Operation;
  power: Supply;
  water: Supply;
  staff: Supply;
  available: number;
  acceptsEvacuees: boolean;
  acceptsPatients: boolean;
  note: string;
}

/** A facility's status, by its staff (or an operator taking it by phone). */
export function FacilityStatusForm({
  disasterId,
  facilityId,
  name,
  current,
  done,
}: {
  disasterId: bigint;
  facilityId: bigint;
  name: string;
  current?: FacilityStatus;
  done: (recorded: Observation | undefined) => void;
}) {
  const [form, setForm] = useState<StatusForm>({
    operation: current?.operation || Operation.OPERATING,
    power: current?.power || Supply.NORMAL,
    water: current?.water || Supply.NORMAL,
    staff: current?.staff || Supply.NORMAL,
    available: current?.available ?? 0,
    acceptsEvacuees: current?.acceptsEvacuees ?? false,
    acceptsPatients: current?.acceptsPatients ?? false,
    note: "",
  });
  const set = (change: Partial<StatusForm>) => setForm({ ...form, ...change });
  const report = useAction("施設の状況の報告", (c, key, f: StatusForm) => {
    const { note, ...status } = f;
    return c.disaster.reportFacilityStatus({ idempotencyKey: key, disasterId, facilityId, status, note: note.trim() });
  });
  const submit = async (e: Event) => {
    e.preventDefault();
    const answer = await report.run(form);
    if (answer) done(answer.observation);
  };
  const supply = (label: string, key: "power" | "water" | "staff") => (
    <label>
      {label}
      <select value={form[key]} onChange={(e) => set({ [key]: Number(e.currentTarget.value) })}>
        <EnumOptions labels={SUPPLIES} />
      </select>
    </label>
  );
  return (
    <form class="disaster-form" onSubmit={submit} aria-label={`${name}の状況を報告`}>
      <div class="row wrap">
        <label>
          稼働
          <select value={form.operation} onChange={(e) => set({ operation: Number(e.currentTarget.value) })}>
            <EnumOptions labels={OPERATIONS} />
          </select>
        </label>
        {supply("電気", "power")}
        {supply("水", "water")}
        {supply("職員", "staff")}
        <label>
          受け入れ可能数（床・件）
          <input type="number" min={0} max={100000} value={form.available} onInput={(e) => set({ available: Math.max(0, Math.floor(Number(e.currentTarget.value) || 0)) })} />
        </label>
      </div>
      <label class="check">
        <input type="checkbox" checked={form.acceptsEvacuees} onChange={(e) => set({ acceptsEvacuees: e.currentTarget.checked })} />
        避難者を受け入れ可
      </label>
      <label class="check">
        <input type="checkbox" checked={form.acceptsPatients} onChange={(e) => set({ acceptsPatients: e.currentTarget.checked })} />
        新規の患者を受け入れ可
      </label>
      <label>
        メモ（任意）
        <textarea rows={2} maxLength={1000} value={form.note} onInput={(e) => set({ note: e.currentTarget.value })} />
      </label>
      <ErrorBox message={report.error} />
      <button class="primary" disabled={report.busy}>
        状況を報告する
      </button>
    </form>
  );
}

/** Municipality names typed in one field: separated by 、, commas or spaces (full-width too). */
export function municipalities(text: string): string[] {
  return [...new Set(text.split(/[\s,、，]+/).map((m) => m.trim()).filter((m) => m.length > 0))];
}

/** Declaring a disaster: operators (or, if the hub allows it, a facility admin for its own municipality). */
export function DeclareForm({ done }: { done: (d: Disaster | undefined) => void }) {
  const [name, setName] = useState("");
  const [where, setWhere] = useState("");
  const declare = useAction("災害の宣言", (c, key, n: string, m: string[]) => c.disaster.declareDisaster({ idempotencyKey: key, name: n, municipalities: m }));
  const submit = async (e: Event) => {
    e.preventDefault();
    const answer = await declare.run(name.trim(), municipalities(where));
    if (answer) {
      setName("");
      setWhere("");
      done(answer.disaster);
    }
  };
  return (
    <form class="disaster-form" onSubmit={submit} aria-label="災害を宣言">
      <label>
        災害の名称
        <input required maxLength={100} placeholder="例：令和8年台風第19号" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        対象の市町村（「、」・カンマ・空白で区切る）
        <input required placeholder="例：宇都宮市、鹿沼市" value={where} onInput={(e) => setWhere(e.currentTarget.value)} />
      </label>
      <ErrorBox message={declare.error} />
      <button class="danger" disabled={declare.busy}>
        災害を宣言する
      </button>
    </form>
  );
}
