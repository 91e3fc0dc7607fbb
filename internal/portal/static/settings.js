// Generic settings sections: a <form data-settings="/api/v1/..."> inside a
// <section data-settings-section> is filled from GET on that URL and saved
// with PUT. Names may be dotted ("numbering.start"); a checkbox with
// data-array adds its value to a list, a lone checkbox is a boolean, a
// number input is a number. data-keep="a.b c" names values that the form
// does not edit but that PUT must send back as GET gave them. The section stays hidden when the GET fails (the
// API is not there, or the feature is not configured), and while the
// integration is not connected.
//
// Also understood inside such a form: data-when="range:groups" shows an
// element only while the field "range" has that value; a directory picker
// (data-picker, data-picker-url, data-picker-field) edits a list of ids;
// data-pause-url and data-pause-dialog ask, when a switched-on "enabled" is
// switched off, what to delete and post it to the pause URL; a run started
// by the save (initialRunId) is watched like Update now. data-optional on
// the form treats a 404 from GET as "never set" (an empty form); an input
// with data-omit-empty is left out of the PUT when empty (a stored password
// is kept). After the first load and after each save the form gets the
// events sb:loaded and sb:saved (detail: the settings). Adding a section (group sync, contacts,
// presence) is a template block using this; no script needed.
(function () {
  'use strict';
  const SB = window.SB;
  const forms = [...document.querySelectorAll('form[data-settings]')];
  if (!forms.length) return;

  function get(obj, path) {
    return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
  }
  function set(obj, path, v) {
    const keys = path.split('.');
    let o = obj;
    keys.slice(0, -1).forEach((k) => { if (typeof o[k] !== 'object' || o[k] === null) o[k] = {}; o = o[k]; });
    o[keys[keys.length - 1]] = v;
  }

  // A picker with data-picker-key and data-picker-name edits a list of
  // objects ({[key]: id, [name]: text}): each ticked row gets a text field
  // for its name (the phonebook a shared mailbox goes to).
  const pickers = new Map(); // form -> [{field, picker, key, name, names}]
  forms.forEach((form) => {
    pickers.set(form, [...form.querySelectorAll('[data-picker][data-picker-field]')].map((box) => {
      const pk = { field: box.dataset.pickerField, key: box.dataset.pickerKey, name: box.dataset.pickerName, names: new Map() };
      pk.picker = SB.picker(box, box.dataset.pickerUrl, pk.key ? (it, li) => nameRow(pk, it, li) : null);
      if (pk.key) pk.picker.onUpdate = () => box.querySelectorAll('.name-row').forEach((row) => showNameRow(pk, row));
      return pk;
    }));
    form.addEventListener('change', () => showWhen(form));
  });

  function nameRow(pk, it, li) {
    const row = document.createElement('div');
    row.className = 'name-row';
    row.dataset.id = it.id;
    row.dataset.default = it.displayName || it.name || '';
    const input = document.createElement('input');
    input.id = 'pk-' + pk.field.replace(/\W/g, '-') + '-' + it.id;
    input.dataset.pickerNameFor = it.id;
    const label = document.createElement('label');
    label.htmlFor = input.id;
    label.textContent = box2label(pk);
    input.addEventListener('input', () => pk.names.set(it.id, input.value));
    row.append(label, input);
    li.append(row);
    showNameRow(pk, row);
  }
  function box2label(pk) { return pk.picker.box.dataset.pickerNameLabel || 'Name'; }
  function showNameRow(pk, row) {
    const id = row.dataset.id;
    const on = pk.picker.selected.has(id);
    row.hidden = !on;
    if (on && !pk.names.has(id)) pk.names.set(id, row.dataset.default);
    const input = row.querySelector('input');
    if (on && document.activeElement !== input) input.value = pk.names.get(id) || '';
  }
  function pickerValue(pk) {
    if (!pk.key) return [...pk.picker.selected];
    return [...pk.picker.selected].map((id) => ({ [pk.key]: id, [pk.name]: (pk.names.get(id) || '').trim() }));
  }
  function pickerFill(pk, v) {
    if (!pk.key) { pk.picker.select(v); return; }
    pk.names = new Map((v || []).map((o) => [o[pk.key], o[pk.name] || '']));
    pk.picker.select((v || []).map((o) => o[pk.key]));
  }

  function showWhen(form) {
    form.querySelectorAll('[data-when]').forEach((el) => {
      const [name, value] = el.dataset.when.split(':');
      const input = form.elements[name];
      el.hidden = !input || input.value !== value;
      const pk = (pickers.get(form) || []).find((x) => el.contains(x.picker.box));
      if (!el.hidden && pk && !pk.picker.loadedOnce) pk.picker.load(false);
    });
  }

  function fill(form, data) {
    form.querySelectorAll('input[name], select[name], textarea[name]').forEach((el) => {
      const v = get(data, el.name);
      if (el.hasAttribute('data-omit-empty')) el.value = '';
      else if (el.type === 'checkbox') el.checked = el.hasAttribute('data-array') ? Array.isArray(v) && v.includes(el.value) : !!v;
      else if (el.type === 'radio') el.checked = v === el.value;
      else el.value = v == null ? '' : v;
    });
    form.querySelectorAll('[data-show]').forEach((el) => { el.textContent = get(data, el.dataset.show) || ''; });
    for (const pk of pickers.get(form) || []) pickerFill(pk, get(data, pk.field));
    const note = form.querySelector('[data-paused-note]');
    if (note) note.hidden = !data.paused;
    form.querySelectorAll('fieldset').forEach((fs) => { fs.disabled = !!data.paused; });
    showWhen(form);
  }

  function collect(form) {
    const out = {};
    form.querySelectorAll('input[name], select[name], textarea[name]').forEach((el) => {
      if (el.closest('[data-picker]')) return;
      if (el.type === 'checkbox' && el.hasAttribute('data-array')) {
        const cur = get(out, el.name) || [];
        if (el.checked) cur.push(el.value);
        set(out, el.name, cur);
      } else if (el.type === 'checkbox') set(out, el.name, el.checked);
      else if (el.type === 'radio') { if (el.checked) set(out, el.name, el.value); }
      else if (el.hasAttribute('data-omit-empty') && el.value === '') return;
      else if (el.type === 'number') { if (el.value.trim() !== '') set(out, el.name, Number(el.value)); }
      else set(out, el.name, el.value.trim());
    });
    return out;
  }

  const state = new Map(); // form -> loaded
  const last = new Map(); // form -> the settings as last read or saved

  async function load(form) {
    const r = await SB.api('GET', form.dataset.settings);
    if (!r.ok && r.status === 404 && form.hasAttribute('data-optional') && SB.errorOf(r).code === 'not_found') r.data = {};
    else if (!r.ok) return false;
    last.set(form, r.data);
    fill(form, r.data);
    return true;
  }

  function body(form) {
    const out = collect(form);
    for (const path of (form.dataset.keep || '').split(/\s+/).filter(Boolean)) {
      const v = get(last.get(form) || {}, path);
      if (v !== undefined) set(out, path, v);
    }
    for (const pk of pickers.get(form) || []) set(out, pk.field, pickerValue(pk));
    return out;
  }

  forms.forEach((form) => {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      SB.clearErrors(form);
      const b = body(form);
      const prev = last.get(form) || {};
      if (form.dataset.pauseUrl && prev.enabled && !prev.paused && b.enabled === false) {
        const d = document.getElementById(form.dataset.pauseDialog);
        const f = d.querySelector('form');
        f.reset();
        SB.clearErrors(f);
        f.onsubmit = async (e) => {
          e.preventDefault();
          SB.busy(f, true);
          const r = await SB.api('POST', form.dataset.pauseUrl, SB.formValues(f));
          SB.busy(f, false);
          if (!r.ok) { SB.showError(f, r); return; }
          d.close();
          SB.toast('Paused');
          await load(form);
        };
        d.showModal();
        return;
      }
      SB.busy(form, true);
      const r = await SB.api('PUT', form.dataset.settings, b);
      SB.busy(form, false);
      if (!r.ok) {
        const e = SB.errorOf(r);
        // "sharedMailboxes.mailboxes[1].phonebook": the list's slot, naming the item.
        const m = /^(.*?)\[(\d+)\](.*)$/.exec(e.field || '');
        let field = e.field || '';
        let message = e.message;
        if (m) {
          field = m[1];
          const pk = (pickers.get(form) || []).find((x) => x.field === m[1]);
          const v = pk && pickerValue(pk)[Number(m[2])];
          const id = v && (pk.key ? v[pk.key] : v);
          if (id) message = (pk.picker.labels.get(id) || id) + (m[3] ? ' (' + m[3].replace(/^\./, '') + ')' : '') + ': ' + message;
        }
        SB.showError(form, { status: r.status, data: { error: { code: e.code, message, field } } });
        return;
      }
      last.set(form, r.data);
      fill(form, r.data);
      SB.toast(form.dataset.saved || 'Settings saved');
      form.dispatchEvent(new CustomEvent('sb:saved', { detail: r.data }));
      if (r.data.initialRunId && SB.sync && SB.sync.watch) SB.sync.watch(r.data.initialRunId);
    });
  });

  // Follow the integration status the page reports.
  if (SB.sync) {
    const prev = SB.sync.statusChanged;
    SB.sync.statusChanged = async (st) => {
      if (prev) await prev(st);
      for (const form of forms) {
        const section = form.closest('[data-settings-section]') || form;
        if (st.status === 'not_connected') { section.hidden = true; continue; }
        if (!state.get(form)) {
          state.set(form, await load(form));
          if (state.get(form)) form.dispatchEvent(new CustomEvent('sb:loaded', { detail: last.get(form) }));
        }
        section.hidden = !state.get(form);
        const paused = !!(last.get(form) || {}).paused;
        form.querySelectorAll('fieldset').forEach((fs) => { fs.disabled = paused || st.status === 'disabled'; });
      }
    };
  }
})();
