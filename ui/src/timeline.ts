import { api, errorText, type Timeline, type Vital } from "./api";
import { clear, h } from "./dom";

const KINDS: { key: string; label: string }[] = [
  { key: "encounter", label: "Encounters" },
  { key: "condition", label: "Conditions" },
  { key: "observation", label: "Observations" },
  { key: "procedure", label: "Procedures" },
  { key: "medication", label: "Medications" },
  { key: "immunization", label: "Immunizations" },
];

function vitalCard(id: string, label: string, vital: Vital | null): HTMLElement {
  return h(
    "div",
    { class: "vital", id },
    h("div", { class: "vital-label" }, label),
    h("div", { class: "vital-value" }, vital ? vital.value : "—"),
    h("div", { class: "vital-date muted" }, vital?.date ?? "no result"),
  );
}

/** One patient's record in date order, newest first, filterable by type. */
export function timelineView(patientId: string, onBack: () => void, onError: (e: unknown) => void): HTMLElement {
  const body = h("div", { class: "timeline-body" }, h("p", { class: "muted" }, "Loading…"));
  const back = h("button", { id: "timeline-back", type: "button", class: "secondary" }, "← Back to panel (Esc)");
  back.addEventListener("click", onBack);
  const root = h("section", { id: "timeline", class: "view" }, back, body);
  root.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") onBack();
  });

  const shown = new Set(KINDS.map((k) => k.key));
  const render = (t: Timeline) => {
    clear(body);
    const list = h("ol", { class: "events", id: "timeline-events" });
    const fill = () => {
      clear(list);
      const events = t.events.filter((e) => shown.has(e.kind));
      for (const e of events) {
        list.append(
          h(
            "li",
            { class: `event kind-${e.kind}`, "data-kind": e.kind },
            h("span", { class: "event-date" }, e.date ?? "undated"),
            h("span", { class: "event-kind" }, e.kind),
            h("span", { class: "event-display" }, e.display),
            h("span", { class: "event-value" }, e.value ?? ""),
            h("span", { class: "event-status muted" }, e.status ?? ""),
          ),
        );
      }
      if (events.length === 0) list.append(h("li", { class: "muted" }, "Nothing of the selected types."));
    };
    const toggles = h("div", { class: "toolbar", id: "timeline-filters" });
    for (const k of KINDS) {
      const box = h("input", { type: "checkbox", id: `kind-${k.key}`, checked: shown.has(k.key) });
      box.addEventListener("change", () => {
        if (box.checked) shown.add(k.key);
        else shown.delete(k.key);
        fill();
      });
      toggles.append(h("label", { class: "toggle" }, box, ` ${k.label}`));
    }
    body.append(
      h(
        "header",
        { class: "patient-header" },
        h("h2", { id: "timeline-name" }, t.name),
        h("div", { class: "muted" }, [t.sex, t.age === null ? null : `${t.age} y`, t.birthDate ? `born ${t.birthDate}` : null, t.provider ? `PCP ${t.provider}` : null].filter(Boolean).join(" · ")),
      ),
      h(
        "div",
        { class: "vitals" },
        vitalCard("latest-bp", "Blood pressure", t.latestBloodPressure),
        vitalCard("latest-hba1c", "HbA1c", t.latestHba1c),
        vitalCard("latest-bmi", "BMI", t.latestBmi),
      ),
      toggles,
      list,
    );
    fill();
    back.focus();
  };

  api.timeline(patientId).then(render, (e: unknown) => {
    clear(body);
    body.append(h("p", { class: "error" }, errorText(e)));
    onError(e);
  });
  return root;
}
