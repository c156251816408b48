// Japanese labels for the API's enums (the API carries values; the words are the client's, as
// the CLI's labels.rs and the domain's Profession::label).
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AccountKind, FacilityKind, Operation, Profession, Supply, type FacilityStatus } from "../gen/kizuna/common/v1/types_pb";
import { AnswerState, CareRequestKind } from "../gen/kizuna/care_requests/v1/care_request_service_pb";
import { Device, Need, SafetyStatus, type SafetyCheck } from "../gen/kizuna/disaster/v1/disaster_service_pb";

export const PROFESSIONS: Record<Profession, string> = {
  [Profession.UNSPECIFIED]: "",
  [Profession.DOCTOR]: "医師",
  [Profession.NURSE]: "看護師",
  [Profession.VISITING_NURSE]: "訪問看護師",
  [Profession.PHARMACIST]: "薬剤師",
  [Profession.DENTIST]: "歯科医師",
  [Profession.DENTAL_HYGIENIST]: "歯科衛生士",
  [Profession.THERAPIST]: "PT/OT/ST",
  [Profession.CARE_MANAGER]: "ケアマネジャー",
  [Profession.CARE_WORKER]: "介護職",
  [Profession.MEDICAL_SOCIAL_WORKER]: "MSW",
  [Profession.CLERK]: "事務",
  [Profession.MUNICIPAL_STAFF]: "行政職員",
  [Profession.OTHER]: "その他",
};

export const FACILITY_KINDS: Record<FacilityKind, string> = {
  [FacilityKind.UNSPECIFIED]: "",
  [FacilityKind.CLINIC]: "診療所",
  [FacilityKind.HOSPITAL]: "病院",
  [FacilityKind.PHARMACY]: "薬局",
  [FacilityKind.DENTAL_CLINIC]: "歯科診療所",
  [FacilityKind.VISITING_NURSING_STATION]: "訪問看護ステーション",
  [FacilityKind.CARE_OFFICE]: "居宅介護支援事業所",
  [FacilityKind.REHABILITATION]: "リハビリテーション",
  [FacilityKind.MUNICIPALITY]: "行政",
  [FacilityKind.OTHER]: "その他",
};

export const REQUEST_KINDS: Record<CareRequestKind, string> = {
  [CareRequestKind.UNSPECIFIED]: "",
  [CareRequestKind.ADMISSION]: "入院",
  [CareRequestKind.DISCHARGE]: "退院",
  [CareRequestKind.HOME_VISIT]: "往診",
  [CareRequestKind.COLLABORATION]: "連携",
};

export const ANSWER_STATES: Record<AnswerState, string> = {
  [AnswerState.UNSPECIFIED]: "",
  [AnswerState.PENDING]: "未回答",
  [AnswerState.ACCEPTED]: "受諾",
  [AnswerState.DECLINED]: "辞退",
  [AnswerState.CANCELLED]: "取消",
};

// Disaster mode's words, as the domain labels them (kizuna_domain::disaster) and the board's
// CSV writes them.
export const DEVICES: Record<Device, string> = {
  [Device.UNSPECIFIED]: "",
  [Device.HOME_OXYGEN]: "在宅酸素",
  [Device.VENTILATOR]: "人工呼吸器",
  [Device.SUCTION]: "吸引器",
  [Device.DIALYSIS]: "在宅透析",
};

export const SAFETY: Record<SafetyStatus, string> = {
  [SafetyStatus.UNSPECIFIED]: "未確認",
  [SafetyStatus.SAFE]: "無事",
  [SafetyStatus.NEEDS_HELP]: "要支援",
  [SafetyStatus.UNREACHABLE]: "連絡不通",
  [SafetyStatus.EVACUATED]: "避難済み",
};

export const NEEDS: Record<Need, string> = {
  [Need.UNSPECIFIED]: "",
  [Need.POWER]: "電源",
  [Need.OXYGEN]: "酸素",
  [Need.MEDICINE]: "薬",
  [Need.EVACUATION]: "避難",
  [Need.CARE]: "介護・看護",
};

export const OPERATIONS: Record<Operation, string> = {
  [Operation.UNSPECIFIED]: "",
  [Operation.OPERATING]: "通常稼働",
  [Operation.LIMITED]: "一部稼働",
  [Operation.CLOSED]: "休止",
};

export const SUPPLIES: Record<Supply, string> = {
  [Supply.UNSPECIFIED]: "",
  [Supply.NORMAL]: "通常",
  [Supply.LIMITED]: "制限あり",
  [Supply.OUT]: "なし",
};

/** 「要支援・酸素・電源」「避難済み（○○小学校）」: a safety check in one line; 未確認 when none. */
export function safetyLine(check: SafetyCheck | undefined): string {
  if (!check) return SAFETY[SafetyStatus.UNSPECIFIED];
  const needs = check.status === SafetyStatus.NEEDS_HELP ? check.needs.map((n) => NEEDS[n]).filter((n) => n) : [];
  const place = check.status === SafetyStatus.EVACUATED && check.evacuatedTo ? `（${check.evacuatedTo}）` : "";
  return [SAFETY[check.status] ?? "", ...needs].join("・") + place;
}

/** 「一部稼働・電気 なし・水 制限あり・職員 通常・受け入れ 3・避難者受け入れ可」: a facility's status in one line. */
export function facilityStatusLine(s: FacilityStatus): string {
  const parts = [
    OPERATIONS[s.operation],
    s.power ? `電気 ${SUPPLIES[s.power]}` : "",
    s.water ? `水 ${SUPPLIES[s.water]}` : "",
    s.staff ? `職員 ${SUPPLIES[s.staff]}` : "",
    `受け入れ可能 ${s.available}`,
    s.acceptsEvacuees ? "避難者受け入れ可" : "",
    s.acceptsPatients ? "新規患者受け入れ可" : "",
  ];
  return parts.filter((p) => p).join("・");
}

export function profession(p: Profession): string {
  return PROFESSIONS[p] ?? "";
}

/** Who someone is: the profession of a professional, 家族 or 事務局 otherwise. */
export function role(kind: AccountKind, p: Profession): string {
  switch (kind) {
    case AccountKind.PROFESSIONAL:
      return profession(p);
    case AccountKind.FAMILY:
      return "家族";
    case AccountKind.OPERATOR:
      return "事務局";
    default:
      return "";
  }
}

const TIME = new Intl.DateTimeFormat("ja-JP", { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** 「11/30 14:05」: when something happened. */
export function when(ts: Timestamp | undefined): string {
  return ts ? TIME.format(timestampDate(ts)) : "";
}

/** 「3分前」: how old something is. */
export function age(since: Date, now: Date = new Date()): string {
  const s = Math.max(0, Math.round((now.getTime() - since.getTime()) / 1000));
  if (s < 10) return "数秒前";
  if (s < 60) return `${s}秒前`;
  if (s < 3600) return `${Math.floor(s / 60)}分前`;
  if (s < 86400) return `${Math.floor(s / 3600)}時間前`;
  return `${Math.floor(s / 86400)}日前`;
}

/** 「1.2 MB」: a file's size, as file managers show it. */
export function fileSize(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
