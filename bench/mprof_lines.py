"""mprof_lines.py SCRIPT: runs SCRIPT with memory_profiler's line-by-line profiler on every
function it defines (as if each had memory_profiler's @profile), for bench/python.sh: the cost
of the per-line tool the Python memory literature recommends, on the same script as the others.
The report goes to standard output."""
import ast
import sys

import memory_profiler


class Decorate(ast.NodeTransformer):
    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        node.decorator_list.insert(0, ast.Name(id="__mprof__", ctx=ast.Load()))
        return node


path = sys.argv[1]
tree = Decorate().visit(ast.parse(open(path).read(), path))
ast.fix_missing_locations(tree)
sys.argv = sys.argv[1:]
prof = memory_profiler.LineProfiler(backend="psutil")
glob = {"__name__": "__main__", "__file__": path, "__mprof__": prof}
exec(compile(tree, path, "exec"), glob)
memory_profiler.show_results(prof, stream=sys.stdout)
