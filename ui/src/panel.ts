import { Virtualizer, elementScroll, observeElementOffset, observeElementRect } from "@tanstack/virtual-core";
import { api, type Facets, type PanelQuery, type PanelRow, type SortKey } from "./api";
import { clear, debounce, h } from "./dom";

const PAGE = 200;
const ROW_HEIGHT = 34;

interface Filters {
  name: string | null;
  ageMin: number | null;
  ageMax: number | null;
  sex: string | null;
  provider: string | null;
  condition: string | null;
}

const COLUMNS: { key: SortKey | null; label: string; cls: string }[] = [
  { key: "name", label: "Name", cls: "c-name" },
  { key: "age", label: "Age", cls: "c-age" },
  { key: "sex", label: "Sex", cls: "c-sex" },
  { key: "provider", label: "Primary care provider", cls: "c-provider" },
  { key: null, label: "Active conditions", cls: "c-conditions" },
  { key: "lastVisit", label: "Last visit", cls: "c-visit" },
];

/**
 * The panel list: server-side filter and sort, rows fetched a page at a time
 * as the virtualizer asks for them, so 50,000 rows scroll smoothly.
 */
export function panelView(onOpen: (id: string) => void, onError: (e: unknown) => void): HTMLElement {
  const filters: Filters = { name: null, ageMin: null, ageMax: null, sex: null, provider: null, condition: null };
  let sort: SortKey = "name";
  let descending = false;
  let generation = 0;
  let total = 0;
  const pages = new Map<number, PanelRow[]>();
  const pending = new Set<number>();

  const totalLabel = h("span", { id: "panel-total", class: "muted" }, "Loading…");
  const header = h("div", { class: "panel-header", role: "row" });
  const scroller = h("div", { class: "panel-scroll", id: "panel-scroll", tabindex: "-1" });
  const spacer = h("div", { class: "panel-spacer" });
  scroller.append(spacer);

  const num = (v: string): number | null => {
    const n = Number.parseInt(v, 10);
    return Number.isFinite(n) ? n : null;
  };
  const text = (v: string): string | null => (v.trim() === "" ? null : v.trim());

  const nameInput = h("input", { id: "filter-name", type: "search", placeholder: "Name  ( / )", "aria-label": "Filter by name" });
  const ageMin = h("input", { id: "filter-age-min", type: "number", min: "0", max: "120", placeholder: "Age from", "aria-label": "Minimum age" });
  const ageMax = h("input", { id: "filter-age-max", type: "number", min: "0", max: "120", placeholder: "to", "aria-label": "Maximum age" });
  const sexSelect = h(
    "select",
    { id: "filter-sex", "aria-label": "Sex" },
    h("option", { value: "" }, "Any sex"),
    h("option", { value: "female" }, "Female"),
    h("option", { value: "male" }, "Male"),
    h("option", { value: "other" }, "Other"),
    h("option", { value: "unknown" }, "Unknown"),
  );
  const providerSelect = h("select", { id: "filter-provider", "aria-label": "Primary care provider" }, h("option", { value: "" }, "Any provider"));
  const conditionList = h("datalist", { id: "condition-options" });
  const conditionSelect = h("input", { id: "filter-condition", type: "search", list: "condition-options", placeholder: "Condition or code", "aria-label": "Active condition" });
  const clearButton = h("button", { id: "filter-clear", type: "button", class: "secondary" }, "Clear");

  const readFilters = () => {
    filters.name = text(nameInput.value);
    filters.ageMin = num(ageMin.value);
    filters.ageMax = num(ageMax.value);
    filters.sex = text(sexSelect.value);
    filters.provider = text(providerSelect.value);
    filters.condition = text(conditionSelect.value);
    reload();
  };
  const readFiltersSoon = debounce(readFilters, 200);
  nameInput.addEventListener("input", readFiltersSoon);
  ageMin.addEventListener("input", readFiltersSoon);
  ageMax.addEventListener("input", readFiltersSoon);
  for (const s of [sexSelect, providerSelect]) s.addEventListener("change", readFilters);
  conditionSelect.addEventListener("input", readFiltersSoon);
  clearButton.addEventListener("click", () => {
    nameInput.value = ageMin.value = ageMax.value = "";
    sexSelect.value = providerSelect.value = conditionSelect.value = "";
    readFilters();
  });

  const renderHeader = () => {
    clear(header);
    for (const col of COLUMNS) {
      const arrow = col.key === sort ? (descending ? " ▼" : " ▲") : "";
      const cell = col.key
        ? h("button", { type: "button", class: `cell ${col.cls} sort`, "data-sort": col.key, "aria-sort": col.key === sort ? (descending ? "descending" : "ascending") : "none" }, col.label + arrow)
        : h("div", { class: `cell ${col.cls}` }, col.label);
      if (col.key) {
        const key = col.key;
        cell.addEventListener("click", () => {
          if (sort === key) descending = !descending;
          else {
            sort = key;
            descending = false;
          }
          renderHeader();
          reload();
        });
      }
      header.append(cell);
    }
  };

  const virtualizer = new Virtualizer<HTMLDivElement, HTMLDivElement>({
    count: 0,
    getScrollElement: () => scroller,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    observeElementRect,
    observeElementOffset,
    scrollToFn: elementScroll,
    onChange: () => renderRows(),
  });

  const query = (offset: number): PanelQuery => ({ ...filters, sort, descending, offset, limit: PAGE });

  const fetchPage = async (page: number) => {
    if (pages.has(page) || pending.has(page)) return;
    const gen = generation;
    pending.add(page);
    try {
      const result = await api.panel(query(page * PAGE));
      if (gen !== generation) return;
      pages.set(page, result.rows);
      setTotal(result.total);
      renderRows();
    } catch (e) {
      if (gen === generation) onError(e);
    } finally {
      if (gen === generation) pending.delete(page);
    }
  };

  const setTotal = (n: number) => {
    total = n;
    totalLabel.textContent = `${n.toLocaleString("en-US")} patient${n === 1 ? "" : "s"}`;
    if (virtualizer.options.count !== n) {
      virtualizer.setOptions({ ...virtualizer.options, count: n });
      virtualizer._willUpdate();
    }
  };

  const rowFor = (index: number): PanelRow | undefined => pages.get(Math.floor(index / PAGE))?.[index % PAGE];

  const renderRows = () => {
    const items = virtualizer.getVirtualItems();
    spacer.style.height = `${virtualizer.getTotalSize()}px`;
    clear(spacer);
    for (const item of items) {
      const row = rowFor(item.index);
      if (!row) {
        void fetchPage(Math.floor(item.index / PAGE));
        spacer.append(h("div", { class: "panel-row placeholder", style: `transform: translateY(${item.start}px)` }, "…"));
        continue;
      }
      const el = h(
        "div",
        { class: "panel-row", role: "row", tabindex: "0", "data-patient-id": row.id, "data-index": item.index, style: `transform: translateY(${item.start}px)` },
        h("div", { class: "cell c-name" }, row.name),
        h("div", { class: "cell c-age" }, row.age === null ? "" : String(row.age)),
        h("div", { class: "cell c-sex" }, row.sex),
        h("div", { class: "cell c-provider" }, row.provider ?? ""),
        h("div", { class: "cell c-conditions", title: row.conditions.join(", ") }, row.conditions.join(", ")),
        h("div", { class: "cell c-visit" }, row.lastVisit ?? ""),
      );
      el.addEventListener("click", () => onOpen(row.id));
      el.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") onOpen(row.id);
        if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
          ev.preventDefault();
          const next = item.index + (ev.key === "ArrowDown" ? 1 : -1);
          if (next < 0 || next >= total) return;
          virtualizer.scrollToIndex(next);
          window.requestAnimationFrame(() => (spacer.querySelector(`[data-index="${next}"]`) as HTMLElement | null)?.focus());
        }
      });
      spacer.append(el);
    }
  };

  const reload = () => {
    generation += 1;
    pages.clear();
    pending.clear();
    totalLabel.textContent = "Loading…";
    scroller.scrollTop = 0;
    void fetchPage(0);
  };

  const loadFacets = async () => {
    try {
      const facets: Facets = await api.facets();
      for (const p of facets.providers) providerSelect.append(h("option", { value: p.id }, p.name));
      for (const c of facets.conditions) conditionList.append(h("option", { value: c }));
    } catch (e) {
      onError(e);
    }
  };

  const root = h(
    "section",
    { id: "panel-view", class: "view" },
    h("div", { class: "toolbar" }, nameInput, ageMin, ageMax, sexSelect, providerSelect, conditionSelect, conditionList, clearButton, totalLabel),
    h("div", { class: "panel-table", role: "table", "aria-label": "Panel" }, header, scroller),
  );
  root.addEventListener("keydown", (ev) => {
    if (ev.key === "/" && document.activeElement?.tagName !== "INPUT") {
      ev.preventDefault();
      nameInput.focus();
    }
  });

  renderHeader();
  // Mount once the element is in the document so the scroller has a size.
  window.requestAnimationFrame(() => {
    virtualizer._didMount();
    virtualizer._willUpdate();
    void loadFacets();
    reload();
  });
  return root;
}
