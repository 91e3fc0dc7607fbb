// A phonebook's page: who sees its contacts (GET/PUT
// /api/v1/phonebooks/{id}/visibility): everyone, or chosen extensions
// (typed by number) and extension groups.
(function () {
  'use strict';
  const SB = window.SB;
  const form = document.getElementById('vis-form');
  if (!form) return;
  const targets = document.getElementById('vis-targets');
  const mode = () => form.querySelector('input[name=mode]:checked').value;
  form.addEventListener('change', () => { targets.hidden = mode() === 'everyone'; });

  function summary(items) {
    const n = (k) => items.filter((i) => i.kind === k).length;
    const plural = (c, one, many) => c + ' ' + (c === 1 ? one : many);
    const ext = n('extension');
    const grp = n('group');
    if (n('everyone')) return 'Every extension on this PBX sees these contacts.';
    if (!ext && !grp) return 'Nobody sees these contacts yet: grant them to everyone, or to chosen extensions and extension groups.';
    if (!grp) return 'Visible to ' + plural(ext, 'extension', 'extensions') + '.';
    if (!ext) return 'Visible to the members of ' + plural(grp, 'extension group', 'extension groups') + '.';
    return 'Visible to ' + plural(ext, 'extension', 'extensions') + ' and the members of ' + plural(grp, 'extension group', 'extension groups') + '.';
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    SB.clearErrors(form);
    let items = [{ kind: 'everyone' }];
    SB.busy(form, true);
    if (mode() === 'chosen') {
      const res = await SB.resolveNumbers(form.elements.extensions.value);
      if (res.error) {
        SB.busy(form, false);
        SB.showError(form, { status: 400, data: { error: { message: res.error, field: 'extensions' } } });
        return;
      }
      items = res.ids.map((id) => ({ kind: 'extension', targetId: id }))
        .concat([...form.querySelectorAll('input[name=group]:checked')].map((c) => ({ kind: 'group', targetId: c.value })));
    }
    const r = await SB.api('PUT', form.dataset.path, { items });
    SB.busy(form, false);
    if (!r.ok) { SB.showError(form, r); return; }
    document.getElementById('vis-summary').textContent = summary(r.data.items || []);
    SB.toast('Visibility saved');
  });
})();
