"""An import-linter contract type: modules that import only the standard library.

``config/redis_layout.py`` is read by ``boot.py`` before the project's
requirements are installed, so a third-party import there breaks the first
start. A forbidden contract can only list packages to refuse; this one lists
what is allowed: the standard library and the other listed modules.
``allowed_external`` names packages a module may import
inside a ``try: ... except ImportError`` (the linter cannot see the guard).
"""

from __future__ import annotations

import sys

from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    type_name = "stdlib_only"

    modules = fields.ListField(subfield=fields.ModuleField())
    allowed_external = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph, verbose: bool) -> ContractCheck:
        allowed = set(sys.stdlib_module_names) | set(self.allowed_external or [])
        listed = {module.name for module in self.modules}
        found: dict[str, list[tuple[str, int | None]]] = {}
        for module in self.modules:
            for imported in sorted(graph.find_modules_directly_imported_by(module.name)):
                if imported.split(".")[0] in allowed or imported in listed:
                    continue
                details = graph.get_import_details(importer=module.name, imported=imported)
                lines = [(imported, d["line_number"]) for d in details] or [(imported, None)]
                found.setdefault(module.name, []).extend(lines)
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, imports in check.metadata["found"].items():
            for imported, line in imports:
                where = f" (l.{line})" if line else ""
                output.print_error(f"{module} imports {imported}{where}, which is not in the standard library")
            output.new_line()
