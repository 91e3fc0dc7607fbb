// Extensions page: add, edit and delete through the admin API. A synced
// extension's fields that come from Entra are shown read-only.
(function () {
  'use strict';
  const SB = window.SB;
  const dialog = document.getElementById('ext-dialog');
  const form = document.getElementById('ext-form');
  const title = document.getElementById('ext-dialog-title');
  const note = document.getElementById('ext-locked-note');
  let editing = null; // the extension being edited, null when adding
  let presenceSync = null; // the edited extension's Teams presence sync as loaded (null: not shown)

  // Teams availability -> PBX presence mapping tables ([data-mapping]); the
  // PBX presences are the options of the extension form's presence select.
  const AVAILABILITIES = [['Available', 'Available'], ['AvailableIdle', 'Available, idle'], ['Away', 'Away'], ['BeRightBack', 'Be right back'],
    ['Busy', 'Busy'], ['BusyIdle', 'Busy, idle'], ['DoNotDisturb', 'Do not disturb'], ['Offline', 'Offline'], ['PresenceUnknown', 'Unknown']];
  const DEFAULT_MAPPING = { Available: 'available', AvailableIdle: 'available', Away: 'away', BeRightBack: 'away', Busy: 'do_not_disturb',
    BusyIdle: 'do_not_disturb', DoNotDisturb: 'do_not_disturb', Offline: 'off_work', PresenceUnknown: 'available' };
  const presenceOptions = [...document.getElementById('f-presence').options].map((o) => [o.value, o.textContent]);

  function buildMapping(box) {
    const t = document.createElement('table');
    t.className = 'table table-compact';
    const head = t.createTHead().insertRow();
    for (const h of ['Teams availability', 'PBX presence']) { const th = document.createElement('th'); th.scope = 'col'; th.textContent = h; head.append(th); }
    const tb = t.createTBody();
    for (const [key, label] of AVAILABILITIES) {
      const tr = tb.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = label;
      const sel = document.createElement('select');
      sel.dataset.availability = key;
      sel.setAttribute('aria-label', 'PBX presence when Teams shows ' + label);
      for (const [v, l] of presenceOptions) sel.append(new Option(l, v));
      tr.append(th);
      tr.insertCell().append(sel);
    }
    box.replaceChildren(t);
  }
  function setMapping(box, m) {
    box.querySelectorAll('select[data-availability]').forEach((s) => { s.value = (m || {})[s.dataset.availability] || DEFAULT_MAPPING[s.dataset.availability]; });
  }
  function getMapping(box) {
    const m = {};
    box.querySelectorAll('select[data-availability]').forEach((s) => { m[s.dataset.availability] = s.value; });
    return m;
  }
  document.querySelectorAll('[data-mapping]').forEach(buildMapping);

  const psBox = document.getElementById('ext-presence');
  const psEnabled = document.getElementById('ps-enabled');
  const psMapping = document.getElementById('ps-mapping');
  const psNote = document.getElementById('ps-note');
  const psError = document.getElementById('ps-error');

  // loadPresence shows the extension's Teams presence sync; the section stays
  // hidden when the service runs without presence sync.
  async function loadPresence(ext) {
    presenceSync = null;
    psBox.hidden = true;
    psError.textContent = '';
    if (!ext) return;
    const r = await SB.api('GET', '/api/v1/extensions/' + encodeURIComponent(ext.id) + '/presence-sync');
    if (!r.ok || editing !== ext) return;
    presenceSync = r.data;
    psEnabled.checked = !!r.data.enabled;
    psEnabled.disabled = !ext.synced && !r.data.enabled;
    psNote.textContent = ext.synced
      ? 'While on, the extension’s presence follows Teams through the mapping below (when Teams presence is switched on for the PBX).'
      : 'Only extensions synced from Microsoft Entra ID can follow Teams presence.';
    setMapping(psMapping, r.data.mapping);
    psBox.hidden = false;
  }

  function presenceChanged() {
    if (!presenceSync) return false;
    if (psEnabled.checked !== !!presenceSync.enabled) return true;
    const m = getMapping(psMapping);
    return Object.keys(m).some((k) => m[k] !== (presenceSync.mapping || {})[k]);
  }

  function open(ext) {
    editing = ext;
    form.reset();
    SB.clearErrors(form);
    title.textContent = ext ? 'Edit extension ' + ext.number : 'Add extension';
    const locked = new Set((ext && ext.lockedFields) || []);
    note.hidden = locked.size === 0;
    form.querySelectorAll('input[name], select[name]').forEach((el) => {
      if (el.name === 'clientPassword') { el.value = ''; return; }
      if (ext && el.name in ext) el.value = ext[el.name] || '';
      if (el.name === 'presence' && !el.value) el.value = 'available';
      const isLocked = locked.has(el.name);
      el.readOnly = isLocked;
      el.toggleAttribute('aria-readonly', isLocked);
      el.closest('.field').classList.toggle('locked', isLocked);
      el.title = isLocked ? 'Synced from Microsoft Entra ID: change it in Entra' : '';
    });
    loadPresence(ext);
    if (window.SB.sip) SB.sip.show(ext);
    dialog.showModal();
  }

  document.getElementById('ext-new').addEventListener('click', () => open(null));
  // A closed dialog forgets the extension's extra sections.
  dialog.addEventListener('close', () => {
    editing = null;
    presenceSync = null;
    psBox.hidden = true;
    if (SB.sip) SB.sip.show(null);
  });

  document.addEventListener('click', async (ev) => {
    const edit = ev.target.closest('[data-edit]');
    if (edit) {
      edit.disabled = true;
      const r = await SB.api('GET', '/api/v1/extensions/' + encodeURIComponent(edit.dataset.edit));
      edit.disabled = false;
      if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
      open(r.data);
      return;
    }
    const del = ev.target.closest('[data-delete]');
    if (del) {
      const row = del.closest('tr');
      if (!(await SB.confirm('Delete extension ' + row.dataset.number + '? Its group memberships and personal contacts go with it.', 'Delete'))) return;
      del.disabled = true;
      const r = await SB.api('DELETE', '/api/v1/extensions/' + encodeURIComponent(del.dataset.delete));
      del.disabled = false;
      if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
      SB.toast('Extension ' + row.dataset.number + ' deleted');
      SB.refresh();
    }
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    SB.clearErrors(form);
    psError.textContent = '';
    const v = SB.formValues(form);
    if (!v.number) {
      form.querySelector('.field-error[data-for="number"]').textContent = 'Extension number is required.';
      form.elements.number.setAttribute('aria-invalid', 'true');
      form.elements.number.focus();
      return;
    }
    const body = {};
    const locked = new Set((editing && editing.lockedFields) || []);
    for (const [k, val] of Object.entries(v)) {
      if (locked.has(k)) continue; // never send what Entra owns
      if (k === 'clientPassword' && val === '') continue;
      if (editing && k !== 'clientPassword' && (editing[k] || '') === val) continue;
      body[k] = val;
    }
    SB.busy(form, true);
    const r = !editing || Object.keys(body).length
      ? editing
        ? await SB.api('PATCH', '/api/v1/extensions/' + encodeURIComponent(editing.id), body)
        : await SB.api('POST', '/api/v1/extensions', body)
      : { ok: true, data: editing };
    if (!r.ok) { SB.busy(form, false); SB.showError(form, r); return; }
    if (editing && presenceChanged()) {
      const p = await SB.api('PUT', '/api/v1/extensions/' + encodeURIComponent(editing.id) + '/presence-sync',
        { enabled: psEnabled.checked, mapping: getMapping(psMapping) });
      if (!p.ok) {
        SB.busy(form, false);
        psError.textContent = 'Teams presence: ' + SB.errorOf(p).message;
        return;
      }
      presenceSync = p.data;
    }
    SB.busy(form, false);
    const edited = !!editing;
    dialog.close();
    SB.toast(edited ? 'Extension ' + r.data.number + ' saved' : 'Extension ' + r.data.number + ' added');
    SB.refresh();
  });

  // Bulk edit: rows ticked in the list (kept across searches and pages)
  // get one Teams presence switch and/or mapping (PUT /api/v1/presence-sync/extensions).
  const selected = new Set();
  const bar = document.getElementById('bulk-bar');
  function syncSelection() {
    document.querySelectorAll('#ext-table .row-select').forEach((cb) => { cb.checked = selected.has(cb.value); });
    const all = [...document.querySelectorAll('#ext-table .row-select')];
    const pageBox = document.getElementById('ext-select-page');
    if (pageBox) pageBox.checked = all.length > 0 && all.every((cb) => cb.checked);
    bar.hidden = selected.size === 0;
    document.getElementById('bulk-count').textContent = selected.size + ' selected';
  }
  document.addEventListener('change', (ev) => {
    const cb = ev.target;
    if (cb.matches && cb.matches('#ext-table .row-select')) {
      if (cb.checked) selected.add(cb.value); else selected.delete(cb.value);
      syncSelection();
    } else if (cb.id === 'ext-select-page') {
      document.querySelectorAll('#ext-table .row-select').forEach((x) => { if (cb.checked) selected.add(x.value); else selected.delete(x.value); });
      syncSelection();
    }
  });
  document.body.addEventListener('htmx:afterSettle', syncSelection);
  document.getElementById('bulk-clear').addEventListener('click', () => { selected.clear(); syncSelection(); });

  const bpDialog = document.getElementById('bulk-presence-dialog');
  const bpForm = document.getElementById('bulk-presence-form');
  const bpMapping = document.getElementById('bp-mapping');
  const bpSet = document.getElementById('bp-set-mapping');
  bpSet.addEventListener('change', () => { bpMapping.hidden = !bpSet.checked; });
  document.getElementById('bulk-presence-open').addEventListener('click', () => {
    bpForm.reset();
    SB.clearErrors(bpForm);
    setMapping(bpMapping, DEFAULT_MAPPING);
    bpMapping.hidden = true;
    document.getElementById('bulk-presence-count').textContent = String(selected.size);
    bpDialog.showModal();
  });
  bpForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    SB.clearErrors(bpForm);
    const ids = [...selected];
    const body = { extensionIds: ids };
    const en = document.getElementById('bp-enabled').value;
    if (en) body.enabled = en === 'true';
    if (bpSet.checked) body.mapping = getMapping(bpMapping);
    if (!en && !bpSet.checked) {
      bpForm.querySelector('.form-error').textContent = 'Choose to switch presence sync on or off, or set a mapping.';
      return;
    }
    SB.busy(bpForm, true);
    const r = await SB.api('PUT', '/api/v1/presence-sync/extensions', body);
    SB.busy(bpForm, false);
    if (!r.ok) {
      const e = SB.errorOf(r);
      const m = /^extensionIds\[(\d+)\]$/.exec(e.field);
      const row = m && document.querySelector('#ext-table tr[data-id="' + CSS.escape(ids[Number(m[1])]) + '"]');
      bpForm.querySelector('.form-error').textContent = (row ? 'Extension ' + row.dataset.number + ': ' : '') + e.message;
      return;
    }
    bpDialog.close();
    SB.toast('Teams presence updated for ' + r.data.items.length + ' extension' + (r.data.items.length === 1 ? '' : 's'));
  });

  // SIP credentials of the edited extension: the password is fetched (and
  // audited) only when asked for, and can be replaced by a new one.
  const sipBox = document.getElementById('ext-sip');
  const sipPass = document.getElementById('sip-pass');
  const sipShow = document.getElementById('sip-show');
  const sipCopy = document.getElementById('sip-copy');
  const MASK = '••••••••••••';
  let sipExt = null;
  let sipSecret = '';
  function sipFill(c) {
    document.getElementById('sip-user').textContent = c.username || '—';
    document.getElementById('sip-domain').textContent = c.domain || '—';
    sipSecret = c.password || '';
    sipPass.textContent = sipSecret || MASK;
    sipShow.textContent = 'Hide password';
    sipCopy.hidden = !sipSecret;
  }
  function sipHide() {
    sipSecret = '';
    sipPass.textContent = MASK;
    sipShow.textContent = 'Show password';
    sipCopy.hidden = true;
  }
  SB.sip = {
    show(ext) {
      sipExt = ext;
      sipHide();
      sipBox.hidden = !ext;
      if (!ext) return;
      document.getElementById('sip-user').textContent = ext.number;
      document.getElementById('sip-domain').textContent = '—';
    },
  };
  sipShow.addEventListener('click', async () => {
    if (sipSecret) { sipHide(); return; }
    sipShow.disabled = true;
    const r = await SB.api('GET', '/api/v1/extensions/' + encodeURIComponent(sipExt.id) + '/sip-credentials');
    sipShow.disabled = false;
    if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
    sipFill(r.data);
  });
  sipCopy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(sipSecret); SB.toast('Password copied to the clipboard'); } catch (e) { SB.toast('Copying was refused by the browser; select the password instead.', true); }
  });
  document.getElementById('sip-rotate').addEventListener('click', async () => {
    const ext = sipExt;
    if (!(await SB.confirm('Generate a new SIP password for extension ' + ext.number + '? Phones that use the old one stop registering until they get the new one.', 'Generate'))) return;
    const b = document.getElementById('sip-rotate');
    b.disabled = true;
    const r = await SB.api('POST', '/api/v1/extensions/' + encodeURIComponent(ext.id) + '/sip-credentials/rotate');
    b.disabled = false;
    if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
    if (sipExt === ext) sipFill(r.data);
    SB.toast('New SIP password for extension ' + ext.number);
  });
})();
