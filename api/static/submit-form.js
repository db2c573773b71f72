// The submit form, built from each kind's params_schema (GET /kinds).
//
// The browser's own validation is off (novalidate): the server is the judge, and its 422
// errors are shown beside the fields they name. The schema's bounds still shape the inputs.

import { ApiError, request } from "./client.js";

const OPTIONS = ["priority", "delay_seconds"];

export class SubmitForm {
  constructor(form, { onSubmitted }) {
    this.form = form;
    this.onSubmitted = onSubmitted;
    this.kinds = new Map();
    this.fields = new Map();
    this.kindSelect = form.querySelector("#submit-kind");
    this.description = form.querySelector("#kind-description");
    this.params = form.querySelector("#params-fields");
    this.error = form.querySelector("#submit-error");
    this.result = form.querySelector("#submit-result");
    this.button = form.querySelector("#submit-button");
    this.kindSelect.addEventListener("change", () => this.build());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  setKinds(kinds) {
    const previous = this.kindSelect.value;
    this.kinds = new Map(kinds.map((kind) => [kind.kind, kind]));
    this.kindSelect.replaceChildren(
      ...kinds.map((kind) => new Option(`${kind.kind} (${kind.lane})`, kind.kind)),
    );
    if (this.kinds.has(previous)) this.kindSelect.value = previous;
    this.build();
  }

  build() {
    const kind = this.kinds.get(this.kindSelect.value);
    this.clearErrors();
    this.fields.clear();
    const legend = this.params.querySelector("legend");
    this.params.replaceChildren(legend);
    this.description.textContent = kind?.description ?? "";
    if (!kind) return;
    const schema = kind.params_schema ?? {};
    const required = new Set(schema.required ?? []);
    const properties = Object.entries(schema.properties ?? {});
    if (properties.length === 0) {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = "This kind takes no params.";
      this.params.append(none);
    }
    for (const [name, property] of properties) {
      const field = fieldFor(name, resolve(property, schema), required.has(name));
      this.fields.set(name, field);
      this.params.append(field.element);
    }
  }

  values() {
    const params = {};
    for (const [name, field] of this.fields) {
      const value = field.read();
      if (value !== undefined) params[name] = value;
    }
    const body = { kind: this.kindSelect.value, params };
    body.priority = this.form.querySelector("#field-priority").value;
    const delay = this.form.querySelector("#field-delay_seconds").value.trim();
    if (delay !== "") body.delay_seconds = numberOrText(delay);
    return body;
  }

  async submit() {
    this.clearErrors();
    this.result.textContent = "";
    let body;
    try {
      body = this.values();
    } catch (error) {
      this.error.textContent = error.message;
      return;
    }
    this.button.disabled = true;
    try {
      const job = await request("POST", "/jobs", body);
      this.result.textContent = `Submitted ${job.kind} job ${job.id}.`;
      this.onSubmitted(job);
    } catch (error) {
      this.showError(error);
    } finally {
      this.button.disabled = false;
    }
  }

  showError(error) {
    if (!(error instanceof ApiError) || error.status !== 422 || !Array.isArray(error.detail)) {
      this.error.textContent =
        error instanceof ApiError && error.status === 429
          ? "Too many requests; wait a moment and submit again."
          : `Not submitted: ${error.message}`;
      return;
    }
    const elsewhere = [];
    for (const item of error.detail) {
      const target = this.errorTarget(item.loc ?? []);
      if (target) {
        target.add(item.msg);
      } else {
        elsewhere.push(`${(item.loc ?? []).slice(1).join(".") || "request"}: ${item.msg}`);
      }
    }
    this.error.textContent = elsewhere.length
      ? elsewhere.join("; ")
      : "Not submitted: see the messages beside the fields.";
    this.form.querySelector("[aria-invalid='true']")?.focus();
  }

  /** Where a 422 error's loc points: ["body", "params", name] or ["body", option]. */
  errorTarget(loc) {
    if (loc[0] !== "body") return null;
    if (loc[1] === "params" && loc.length >= 3) return this.fields.get(String(loc[2])) ?? null;
    if (loc.length === 2 && OPTIONS.includes(loc[1])) {
      return errorSlot(
        this.form.querySelector(`#field-${loc[1]}`),
        this.form.querySelector(`#error-${loc[1]}`),
      );
    }
    return null;
  }

  clearErrors() {
    this.error.textContent = "";
    for (const element of this.form.querySelectorAll("[aria-invalid]")) {
      element.removeAttribute("aria-invalid");
    }
    for (const element of this.form.querySelectorAll(".field .error")) {
      element.textContent = "";
    }
  }
}

/** A property with its $ref followed and an Optional's null branch set aside. */
function resolve(property, schema) {
  let resolved = property;
  if (resolved.$ref) resolved = { ...lookup(resolved.$ref, schema), ...without(resolved, "$ref") };
  const branches = resolved.anyOf ?? resolved.oneOf;
  if (Array.isArray(branches)) {
    const real = branches.filter((branch) => branch.type !== "null");
    if (real.length === 1) {
      return { ...without(resolved, "anyOf", "oneOf"), ...resolve(real[0], schema), nullable: true };
    }
  }
  if (resolved.allOf?.length === 1) {
    return { ...without(resolved, "allOf"), ...resolve(resolved.allOf[0], schema) };
  }
  return resolved;
}

function lookup(ref, schema) {
  const path = ref.replace(/^#\//, "").split("/");
  let node = schema;
  for (const part of path) node = node?.[part];
  return node ?? {};
}

function without(object, ...keys) {
  const copy = { ...object };
  for (const key of keys) delete copy[key];
  return copy;
}

function numberOrText(text) {
  const value = Number(text);
  // Sent as typed when it is no number: the server says what is wrong with it.
  return text !== "" && Number.isFinite(value) ? value : text;
}

function errorSlot(input, slot) {
  return {
    add(message) {
      input.setAttribute("aria-invalid", "true");
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
    },
  };
}

/** One labelled input for a property: its element, how to read it, where its errors go. */
function fieldFor(name, property, required) {
  const id = `param-${name}`;
  const element = document.createElement("div");
  element.className = "field";
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = property.title ?? name;
  if (required) {
    const mark = document.createElement("span");
    mark.className = "required";
    mark.textContent = " (required)";
    label.append(mark);
  }
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = `hint-${name}`;
  hint.textContent = describe(property);
  const error = document.createElement("p");
  error.className = "error";
  error.id = `error-${id}`;
  const input = inputFor(property);
  input.id = id;
  input.name = name;
  input.setAttribute("aria-describedby", `${hint.id} ${error.id}`);
  if (required) input.setAttribute("aria-required", "true");
  const type = property.type;
  if (type === "boolean") {
    element.classList.add("check");
    element.append(input, label, hint, error);
  } else {
    element.append(label, input, hint, error);
  }
  const slot = errorSlot(input, error);
  return {
    element,
    add: slot.add,
    read() {
      if (type === "boolean") return input.checked;
      const raw = input.value;
      if (raw.trim() === "") {
        if (type === "string" && required && !property.nullable) return "";
        return undefined;
      }
      if (Array.isArray(property.enum) && property.enum.some((v) => typeof v !== "string")) {
        return property.enum.find((v) => String(v) === raw) ?? raw;
      }
      if (type === "integer" || type === "number") return numberOrText(raw.trim());
      if (type === "string" || type === undefined) return raw;
      try {
        return JSON.parse(raw);
      } catch {
        throw new Error(`${name}: not valid JSON`);
      }
    },
  };
}

function inputFor(property) {
  const type = property.type;
  if (Array.isArray(property.enum)) {
    const select = document.createElement("select");
    if (property.nullable || property.default === undefined) select.append(new Option("\u2013", ""));
    for (const value of property.enum) select.append(new Option(String(value), String(value)));
    if (property.default !== undefined && property.default !== null) {
      select.value = String(property.default);
    }
    return select;
  }
  if (type === "boolean") {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = property.default === true;
    return box;
  }
  if (type === "integer" || type === "number") {
    const input = document.createElement("input");
    input.type = "number";
    input.inputMode = type === "integer" ? "numeric" : "decimal";
    input.step = type === "integer" ? "1" : "any";
    const low = property.minimum ?? property.exclusiveMinimum;
    const high = property.maximum ?? property.exclusiveMaximum;
    if (low !== undefined) input.min = String(low);
    if (high !== undefined) input.max = String(high);
    setDefault(input, property);
    return input;
  }
  if (type === "string") {
    const long = (property.maxLength ?? 0) > 1000;
    const input = document.createElement(long ? "textarea" : "input");
    if (long) input.rows = 3;
    else input.type = { email: "email", uri: "url", "date-time": "text" }[property.format] ?? "text";
    if (property.minLength !== undefined) input.minLength = property.minLength;
    if (property.maxLength !== undefined) input.maxLength = property.maxLength;
    setDefault(input, property);
    return input;
  }
  // Arrays, objects and anything else: JSON text.
  const area = document.createElement("textarea");
  area.rows = 3;
  area.spellcheck = false;
  area.placeholder = "JSON";
  if (property.default !== undefined) area.value = JSON.stringify(property.default);
  return area;
}

function setDefault(input, property) {
  if (property.default !== undefined && property.default !== null) {
    input.value = String(property.default);
  } else if (Array.isArray(property.examples) && property.examples.length) {
    input.placeholder = `e.g. ${property.examples[0]}`;
  }
}

/** The rules a value must keep, in words: type, bounds, default. */
function describe(property) {
  const parts = [];
  if (property.description) parts.push(property.description);
  const kind = property.format ?? property.type;
  if (kind) parts.push(kind);
  const low = property.minimum ?? property.exclusiveMinimum;
  const high = property.maximum ?? property.exclusiveMaximum;
  if (low !== undefined && high !== undefined) parts.push(`${low} to ${high}`);
  else if (low !== undefined) parts.push(property.exclusiveMinimum !== undefined ? `above ${low}` : `at least ${low}`);
  else if (high !== undefined) parts.push(`at most ${high}`);
  if (property.minLength !== undefined && property.maxLength !== undefined) {
    parts.push(`${property.minLength} to ${property.maxLength} characters`);
  } else if (property.maxLength !== undefined) {
    parts.push(`up to ${property.maxLength} characters`);
  } else if (property.minLength !== undefined) {
    parts.push(`at least ${property.minLength} characters`);
  }
  if (property.default !== undefined) parts.push(`default ${JSON.stringify(property.default)}`);
  if (property.nullable) parts.push("optional");
  return parts.join(" \u00B7 ");
}
