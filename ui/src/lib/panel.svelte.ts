// The panel's state: filters, sort, the pages already fetched and the scroll
// position. It outlives the panel screen (opening a patient and coming back
// shows the same list without asking Rust again) and is forgotten when the
// session ends.
import type { Facets } from "../bindings/Facets";
import type { PanelQuery } from "../bindings/PanelQuery";
import type { PanelRow } from "../bindings/PanelRow";
import type { SortKey } from "../bindings/SortKey";
import { api } from "./api";
import { PAGE, PagedRows } from "./paged.svelte";
import { session } from "./session.svelte";

/** What the filter fields hold, as typed. */
export interface FilterInputs {
  name: string;
  ageMin: string;
  ageMax: string;
  sex: string;
  provider: string;
  condition: string;
}

const NO_FILTERS: FilterInputs = { name: "", ageMin: "", ageMax: "", sex: "", provider: "", condition: "" };

const text = (v: string): string | null => (v.trim() === "" ? null : v.trim());
const num = (v: string): number | null => {
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
};

class PanelState extends PagedRows<PanelQuery, PanelRow> {
  inputs = $state<FilterInputs>({ ...NO_FILTERS });
  sort = $state<SortKey>("name");
  descending = $state(false);
  facets = $state.raw<Facets | null>(null);
  /** Scroll position and last opened patient, to return to the same place. */
  scrollOffset = 0;
  lastOpened: string | null = null;

  /** Bumped when the session ends, so late answers to an earlier session are dropped. */
  #epoch = 0;

  /** The query the filter fields describe, for rows from `offset`. */
  query(offset: number): PanelQuery {
    const f = this.inputs;
    return {
      name: text(f.name),
      ageMin: num(f.ageMin),
      ageMax: num(f.ageMax),
      sex: text(f.sex),
      provider: text(f.provider),
      condition: text(f.condition),
      sort: this.sort,
      descending: this.descending,
      offset,
      limit: PAGE,
    };
  }

  protected fetchRows(q: PanelQuery) {
    return api.panel(q);
  }

  override reload(onError: (e: unknown) => void): void {
    this.scrollOffset = 0;
    super.reload(onError);
  }

  async loadFacets(onError: (e: unknown) => void): Promise<void> {
    const epoch = this.#epoch;
    try {
      const facets = await api.facets();
      if (epoch === this.#epoch) this.facets = facets;
    } catch (e) {
      if (epoch === this.#epoch) onError(e);
    }
  }

  /** Forgets everything (the session ended). */
  reset(): void {
    this.#epoch += 1;
    this.forgetRows();
    this.inputs = { ...NO_FILTERS };
    this.sort = "name";
    this.descending = false;
    this.facets = null;
    this.scrollOffset = 0;
    this.lastOpened = null;
  }
}

export const panel = new PanelState();
session.onEnd(() => panel.reset());
