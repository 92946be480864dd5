// A long list fetched a page at a time, as the virtual list scrolls: the pages already
// fetched, the total, and a generation so that answers to an earlier query are dropped.
// The panel and the worklist both build on it.
import { SvelteMap } from "svelte/reactivity";

/** Rows fetched per call. */
export const PAGE = 200;

export abstract class PagedRows<Query, Row> {
  /** Rows matching the current query; null while its first page loads. */
  total = $state<number | null>(null);
  /** Rows the list shows: the previous query's until the new one's first page arrives. */
  count = $state(0);
  /** Fetched pages of the shown query, by page number. */
  readonly pages = new SvelteMap<number, Row[]>();

  #generation = 0;
  #shown = -1;
  #applied: string | null = null;
  #loaded = new Set<number>();
  #pending = new Set<number>();

  /** The query the filter fields describe, for rows from `offset`. */
  abstract query(offset: number): Query;
  /** Asks Rust for one page. */
  protected abstract fetchRows(q: Query): Promise<{ rows: Row[]; total: number | bigint }>;

  /** Whether the shown rows are not those of the query the fields describe (or none were asked for). */
  get stale(): boolean {
    return this.#applied !== JSON.stringify(this.query(0));
  }

  /** The data changed underneath (a sync): the next look at the list fetches it again. */
  invalidate(): void {
    this.#applied = null;
  }

  /** Starts the current query over from its first page. */
  reload(onError: (e: unknown) => void): void {
    this.#generation += 1;
    this.#loaded.clear();
    this.#pending.clear();
    this.#applied = JSON.stringify(this.query(0));
    this.total = null;
    void this.fetchPage(0, onError);
  }

  /** Fetches the pages holding rows `first` to `last`, unless fetched or on their way. */
  ensureRows(first: number, last: number, onError: (e: unknown) => void): void {
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) void this.fetchPage(p, onError);
  }

  rowAt(index: number): Row | undefined {
    return this.pages.get(Math.floor(index / PAGE))?.[index % PAGE];
  }

  async fetchPage(page: number, onError: (e: unknown) => void): Promise<void> {
    if (this.#loaded.has(page) || this.#pending.has(page)) return;
    const gen = this.#generation;
    this.#pending.add(page);
    try {
      const result = await this.fetchRows(this.query(page * PAGE));
      if (gen !== this.#generation) return;
      if (this.#shown !== gen) {
        // The new query's first rows: only now drop the previous query's.
        this.pages.clear();
        this.#shown = gen;
      }
      this.pages.set(page, result.rows);
      this.#loaded.add(page);
      this.total = Number(result.total);
      this.count = Number(result.total);
    } catch (e) {
      if (gen === this.#generation) onError(e);
    } finally {
      if (gen === this.#generation) this.#pending.delete(page);
    }
  }

  /** Forgets every row and every query on its way (the session ended). */
  protected forgetRows(): void {
    this.#generation += 1;
    this.#shown = -1;
    this.#applied = null;
    this.#loaded.clear();
    this.#pending.clear();
    this.total = null;
    this.count = 0;
    this.pages.clear();
  }
}
