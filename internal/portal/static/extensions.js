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
    dialog.showModal();
  }

  document.getElementById('ext-new').addEventListener('click', () => open(null));

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
    const r = editing
      ? await SB.api('PATCH', '/api/v1/extensions/' + encodeURIComponent(editing.id), body)
      : await SB.api('POST', '/api/v1/extensions', body);
    SB.busy(form, false);
    if (!r.ok) { SB.showError(form, r); return; }
    dialog.close();
    SB.toast(editing ? 'Extension ' + r.data.number + ' saved' : 'Extension ' + r.data.number + ' added');
    SB.refresh();
  });
})();
