// User synchronization settings (GET/PUT /api/v1/integration/user-sync):
// the range with the directory pickers (paged past the first results), the
// numbering, the rules and the field mapping. Errors from the API land next
// to the field that error.field names. Shown only when that API answers.
(function () {
  'use strict';
  const SB = window.SB;
  const $ = (id) => document.getElementById(id);
  const card = $('usersync-card');
  const form = $('usersync-form');
  let current = null; // the settings as last loaded or saved
  let loaded = false;

  // Directory pickers (SB.picker); the users picker adds bind controls.
  const pickers = {};
  form.querySelectorAll('[data-picker]').forEach((box) => {
    const kind = box.dataset.picker; // users | groups
    pickers[kind] = SB.picker(box, '/api/v1/directory/' + kind, kind === 'users'
      ? (it, li, p) => { if (bindable(it)) li.append(bindControls(it, p)); }
      : null);
  });

  // Hand-picked users (saved with range users) are bound one by one to an
  // existing extension or to a new one with the number typed, or unbound.
  function bindable(it) {
    return current && current.range === 'users' && !current.paused && (current.userIds || []).includes(it.id);
  }

  function bindControls(it, picker) {
    const box = document.createElement('div');
    box.className = 'bind-row';
    const who = it.displayName || it.userPrincipalName || it.id;
    const act = async (method, path, body, done) => {
      box.querySelectorAll('button, input').forEach((el) => { el.disabled = true; });
      const r = await SB.api(method, path, body);
      box.querySelectorAll('button, input').forEach((el) => { el.disabled = false; });
      if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
      SB.toast(done(r.data));
      await load(); // the saved list changed (unbind drops the user)
      await picker.load(false);
    };
    const path = '/api/v1/integration/user-sync/users/' + encodeURIComponent(it.id);
    if (it.extensionNumber) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn btn-small';
      b.textContent = 'Unbind from ' + it.extensionNumber;
      b.setAttribute('aria-label', 'Unbind ' + who + ' from extension ' + it.extensionNumber);
      b.addEventListener('click', () => act('POST', path + '/unbind', undefined, () => who + ' unbound; extension ' + it.extensionNumber + ' is now managed on the PBX'));
      box.append(b);
      return box;
    }
    const input = document.createElement('input');
    input.inputMode = 'numeric';
    input.placeholder = 'Extension number';
    input.setAttribute('aria-label', 'Extension number for ' + who);
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-small';
    b.textContent = 'Bind';
    b.setAttribute('aria-label', 'Bind ' + who);
    b.addEventListener('click', async () => {
      const n = input.value.trim();
      if (!n) { input.focus(); return; }
      // An existing extension with that number is bound; otherwise a new one is created.
      const found = await SB.resolveNumbers(n);
      const body = found.ids ? { extensionId: found.ids[0] } : { number: n };
      act('POST', path + '/bind', body, () => who + ' bound to extension ' + n);
    });
    box.append(input, b);
    return box;
  }

  function showDependent() {
    const range = form.elements.range.value;
    form.querySelectorAll('[data-range]').forEach((el) => { el.hidden = el.dataset.range !== range; });
    const mode = form.elements['numbering.mode'].value;
    form.querySelectorAll('[data-numbering]').forEach((el) => { el.hidden = el.dataset.numbering !== mode; });
    const picker = pickers[range];
    if (picker && !picker.loadedOnce) { picker.loadedOnce = true; picker.load(false); }
  }
  form.elements.range.addEventListener('change', showDependent);
  form.elements['numbering.mode'].addEventListener('change', showDependent);

  function fill(v) {
    current = v;
    const f = form.elements;
    f.enabled.checked = !!v.enabled;
    f.range.value = v.range || 'all';
    form.querySelectorAll('input[name=userType]').forEach((c) => { c.checked = (v.userTypes || []).includes(c.value); });
    pickers.groups.select(v.groupIds);
    pickers.users.select(v.userIds);
    f.deleteOutOfRange.checked = !!v.deleteOutOfRange;
    const n = v.numbering || {};
    f['numbering.mode'].value = n.mode || 'auto';
    f['numbering.start'].value = n.start || '';
    f['numbering.property'].value = n.property || '';
    form.querySelectorAll('input[name=deleteWhen]').forEach((c) => { c.checked = (v.deleteWhen || []).includes(c.value); });
    f.associateByEmail.checked = !!v.associateByEmail;
    f.welcomeEmail.checked = !!v.welcomeEmail;
    const g = v.deleteGuard || {};
    f['deleteGuard.maxPercent'].value = g.maxPercent === undefined || g.maxPercent === null ? '' : g.maxPercent;
    const m = v.fields || {};
    for (const k of ['firstName', 'lastName', 'email', 'mobile', 'jobTitle']) f['fields.' + k].value = m[k] || '';
    $('usersync-paused').hidden = !v.paused;
    form.querySelectorAll('fieldset').forEach((fs) => { fs.disabled = !!v.paused; });
    const state = $('usersync-state');
    state.textContent = v.paused ? 'Paused' : v.enabled ? 'On' : 'Off';
    state.dataset.status = v.paused ? 'disabled' : v.enabled ? 'connected' : '';
    showDependent();
  }

  function collect() {
    const f = form.elements;
    const body = {
      enabled: f.enabled.checked,
      range: f.range.value,
      userTypes: [...form.querySelectorAll('input[name=userType]:checked')].map((c) => c.value),
      groupIds: [...pickers.groups.selected],
      userIds: [...pickers.users.selected],
      numbering: { mode: f['numbering.mode'].value },
      deleteWhen: [...form.querySelectorAll('input[name=deleteWhen]:checked')].map((c) => c.value),
      deleteOutOfRange: f.deleteOutOfRange.checked,
      associateByEmail: f.associateByEmail.checked,
      welcomeEmail: f.welcomeEmail.checked,
      fields: {},
      deleteGuard: Object.assign({}, (current && current.deleteGuard) || {}),
    };
    if (body.numbering.mode === 'auto') body.numbering.start = f['numbering.start'].value.trim();
    else body.numbering.property = f['numbering.property'].value.trim();
    for (const k of ['firstName', 'lastName', 'email', 'mobile', 'jobTitle']) body.fields[k] = f['fields.' + k].value.trim();
    const pct = f['deleteGuard.maxPercent'].value.trim();
    if (pct === '') delete body.deleteGuard.maxPercent;
    else body.deleteGuard.maxPercent = Number(pct);
    return body;
  }

  // showFieldError maps error.field (e.g. "numbering.start", "userTypes[0]")
  // to the slot shown next to that input.
  function showFieldError(r) {
    const e = SB.errorOf(r);
    const field = (e.field || '').replace(/\[\d+\]$/, '');
    SB.showError(form, { status: r.status, data: { error: { code: e.code, message: e.message, field } } });
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    SB.clearErrors(form);
    const body = collect();
    if (current && current.enabled && !current.paused && !body.enabled) {
      // Switching user sync off is a pause: ask what happens to the extensions.
      const d = $('pause-dialog');
      d.querySelector('form').reset();
      d.showModal();
      return;
    }
    SB.busy(form, true);
    const r = await SB.api('PUT', '/api/v1/integration/user-sync', body);
    SB.busy(form, false);
    if (!r.ok) { showFieldError(r); return; }
    fill(r.data);
    if (r.data.range === 'users') pickers.users.load(false);
    SB.toast(r.data.initialRunId ? 'Saved: the initial synchronization has started' : 'User synchronization settings saved');
    if (r.data.initialRunId && SB.sync) SB.sync.watch(r.data.initialRunId);
  });

  $('pause-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    SB.clearErrors(f);
    SB.busy(f, true);
    const r = await SB.api('POST', '/api/v1/integration/user-sync/pause', { deleteExtensions: f.elements.deleteExtensions.checked });
    SB.busy(f, false);
    if (!r.ok) { SB.showError(f, r); return; }
    $('pause-dialog').close();
    SB.toast('User synchronization paused');
    load();
  });

  async function load() {
    const r = await SB.api('GET', '/api/v1/integration/user-sync');
    if (!r.ok) { card.hidden = true; return false; }
    fill(r.data);
    return true;
  }

  // The integration page tells us its status; user sync needs a connection.
  const prev = SB.sync && SB.sync.statusChanged;
  if (SB.sync) {
    SB.sync.statusChanged = async (st) => {
      if (prev) await prev(st);
      if (st.status === 'not_connected') { card.hidden = true; return; }
      if (!loaded) loaded = await load();
      card.hidden = !loaded;
      const locked = !!(current && current.paused) || st.status === 'disabled';
      form.querySelectorAll('fieldset').forEach((fs) => { fs.disabled = locked; });
    };
  }
})();
