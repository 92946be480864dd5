// The worklist's state: filters, sort, fetched pages, the selection and the local
// evaluation's progress. It outlives the screen (opening a timeline and coming back shows the
// same list) and is forgotten when the session ends.
import { SvelteSet } from "svelte/reactivity";
import type { EvaluationStatus } from "../bindings/EvaluationStatus";
import type { WorklistFacets } from "../bindings/WorklistFacets";
import type { WorklistQuery } from "../bindings/WorklistQuery";
import type { WorklistRow } from "../bindings/WorklistRow";
import type { WorklistSortKey } from "../bindings/WorklistSortKey";
import { api } from "./api";
import { PAGE, PagedRows } from "./paged.svelte";
import { session } from "./session.svelte";

export interface WorklistInputs {
  name: string;
  measure: string;
  provider: string;
  careTeam: string;
  state: string;
  outreach: string;
  outreachDate: string;
  assignee: string;
  minGaps: string;
  dueBefore: string;
  closed: boolean;
}

export const NO_FILTERS: WorklistInputs = {
  name: "",
  measure: "",
  provider: "",
  careTeam: "",
  state: "",
  outreach: "",
  outreachDate: "",
  assignee: "",
  minGaps: "",
  dueBefore: "",
  closed: false,
};

const text = (v: string): string | null => (v.trim() === "" ? null : v.trim());

/** The key of one gap (one row). */
export const rowKey = (r: { patientId: string; measureId: string; groupId: string }): string =>
  `${r.patientId}|${r.measureId}|${r.groupId}`;

class WorklistState extends PagedRows<WorklistQuery, WorklistRow> {
  inputs = $state<WorklistInputs>({ ...NO_FILTERS });
  sort = $state<WorklistSortKey>("priority");
  descending = $state(false);
  readonly selected = new SvelteSet<string>();
  facets = $state.raw<WorklistFacets | null>(null);
  evaluation = $state.raw<EvaluationStatus | null>(null);
  lastOpened: string | null = null;

  query(offset: number): WorklistQuery {
    const f = this.inputs;
    const minGaps = Number.parseInt(f.minGaps, 10);
    return {
      measure: text(f.measure),
      provider: text(f.provider),
      careTeam: text(f.careTeam),
      dueBefore: text(f.dueBefore),
      state: text(f.state),
      outreach: text(f.outreach),
      outreachDate: text(f.outreachDate),
      assignee: f.assignee === "" ? null : f.assignee === "(unassigned)" ? "" : f.assignee,
      minGaps: Number.isFinite(minGaps) && minGaps > 0 ? minGaps : null,
      name: text(f.name),
      includeSnoozed: false,
      closed: f.closed,
      sort: this.sort,
      descending: this.descending,
      offset,
      limit: PAGE,
      asOf: null,
    };
  }

  protected fetchRows(q: WorklistQuery) {
    return api.worklist(q);
  }

  /** Applies a saved view's query to the filter fields. */
  applyQuery(q: WorklistQuery): void {
    this.inputs = {
      name: q.name ?? "",
      measure: q.measure ?? "",
      provider: q.provider ?? "",
      careTeam: q.careTeam ?? "",
      state: q.state ?? "",
      outreach: q.outreach ?? "",
      outreachDate: q.outreachDate ?? "",
      assignee: q.assignee === "" ? "(unassigned)" : (q.assignee ?? ""),
      minGaps: q.minGaps ? String(q.minGaps) : "",
      dueBefore: q.dueBefore ?? "",
      closed: q.closed,
    };
    this.sort = q.sort;
    this.descending = q.descending;
  }

  override reload(onError: (e: unknown) => void): void {
    this.selected.clear();
    super.reload(onError);
  }

  async loadFacets(onError: (e: unknown) => void): Promise<void> {
    try {
      this.facets = await api.worklistFacets();
    } catch (e) {
      onError(e);
    }
  }

  /** Forgets everything (the session ended). */
  reset(): void {
    this.inputs = { ...NO_FILTERS };
    this.sort = "priority";
    this.descending = false;
    this.selected.clear();
    this.facets = null;
    this.lastOpened = null;
    this.forgetRows();
  }
}

export const worklist = new WorklistState();

session.onEnd(() => worklist.reset());
