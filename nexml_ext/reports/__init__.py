"""Platform-made reports: papermill runs a template from ``notebooks/`` with ids as parameters,
nbconvert renders it with the ``nexml`` template from ``report_templates/``.

Below the Workspace (no session, no principal): ``kinds`` (what each report needs and may read),
``execute`` (papermill in a fresh kernel with the run's environment), ``html`` (the cover,
contents and rendering) and ``paths`` (where templates live, source tree or installed).
The notebooks' side, imported inside the kernel only: ``context`` (the run's read-only platform
Workspace) and ``cells`` (escaped HTML tables, banners, figures and the machine-readable summary).
"""
