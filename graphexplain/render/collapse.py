"""Big graphs, made readable: module calls folded into boxes.

A graph of more than `THRESHOLD` nodes (a ConvNet, a transformer), or one
made in modules and more than `TALL` ops deep (a ResNet-18), is drawn and
summarised by module call rather than by node: every call of an
``nn.Module`` becomes one box (its path, type, op count and the worst
status of its nodes), and a run of calls with the same structure (the six
layers of an encoder, the steps of an unrolled loop) becomes one box with a
count. `View` says how far to open: `--depth N`, `--expand MODULE`,
`--depth all`. Smaller graphs are left as they are.

This is a pure function on the Graph and its Verification; it imports no
graphviz or rich, so the picture (render/dot.py) and the walkthrough
(render/terminal.py) draw the same thing.

    >>> from graphexplain.model import Graph
    >>> View().applies(Graph((), (), ()))
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..results import MISMATCH, worst

THRESHOLD = 150  # nodes; a graph this size or smaller is drawn node by node, unless TALL
TALL = 50  # ops one after another: a graph of modules this deep or less is drawn node by node
BUDGET = 40  # drawn items the automatic depth aims to stay within
RANKS = 12  # and rows of items, from the leaves to the root: what fits a screen's height
FOLD = 16  # ops outside every module, one after another, drawn as one box from this many on
ALL = "all"


@dataclass(frozen=True)
class View:
    """How a big graph is shown: `depth` None picks the deepest level that
    keeps the picture within `BUDGET` items and `RANKS` rows, ``"all"`` opens everything (the
    node-by-node picture); `expand` opens these module paths (and all inside
    them); `full` prints every step of the walkthrough."""

    depth: Union[int, str, None] = None
    expand: Tuple[str, ...] = ()
    full: bool = False
    threshold: int = THRESHOLD

    def applies(self, graph) -> bool:
        """Whether `graph` is drawn by module: big, tall (Note [a tall graph of
        modules]), or a depth asked for."""
        if self.depth == ALL:
            return False
        return isinstance(self.depth, int) or len(graph.nodes) > self.threshold or \
            (any(node.module for node in graph.nodes) and height(graph) > TALL)


# Note [a tall graph of modules]
# A ResNet-18 is 133 nodes, under THRESHOLD, but 65 ops deep: node by node
# its picture was 3120 × 10065 pixels, no screen's worth, and cairo took a
# second to paint it. Depth, not the count, is what makes a picture too
# tall to read, so a graph of modules deeper than TALL is drawn by module
# too (a 12-step RNNCell loop, 40 deep, stays node by node). A graph with no
# module has no boxes to draw but the folded runs of FOLD ops, which would
# hide a hand-written loop's every op: it is left to the node count.
def height(graph) -> int:
    """The longest chain of nodes from a leaf to a root: the node-by-node
    picture's height in rows. (Nodes come in backward order, each before
    its producers, so one pass from the end sees every producer first.)"""
    below: Dict[int, int] = {}
    for node in reversed(graph.nodes):
        below[node.id] = 1 + max((below.get(operand.producer, 0) for operand in node.operands
                                  if operand.producer is not None), default=0)
    return max(below.values(), default=0)


def parse_depth(text: str) -> Union[int, str]:
    """``"all"`` or a number of module levels, ``"2"`` → 2."""
    if text.strip().lower() == ALL:
        return ALL
    depth = int(text)  # ValueError: the CLI turns it into a usage message
    if depth < 0:
        raise ValueError(text)
    return depth


@dataclass(frozen=True)
class Call:
    """One call of a module (or a run of identical calls: `paths` has one
    path per call): the nodes made inside it, its own and its submodules'."""

    path: str  # "model.encoder.layers.0"
    kind: Optional[str]  # "TransformerEncoderLayer"; None where no op ran in it directly
    nodes: Tuple[int, ...]  # every node inside, leaves it owns included, in backward order
    children: Tuple["Call", ...] = ()
    own: Tuple[int, ...] = ()  # its nodes outside every child, leaves included

    @property
    def depth(self) -> int:
        return self.path.count(".") + 1


@dataclass(frozen=True)
class Item:
    """Something drawn: one node as today (`box` None), or a box for a
    collapsed module call. `nodes` are all the graph nodes it stands for,
    across the `count` identical calls it may stand for."""

    id: str  # "n12" for a node (the id dot.py gives it), "b3" for a box
    nodes: Tuple[int, ...]
    status: str
    count: int = 1
    box: Optional["Box"] = None

    @property
    def node(self) -> int:
        """The node drawn (of the first call, where it stands for several)."""
        return self.nodes[0]


@dataclass(frozen=True)
class Box:
    """What a collapsed module call's box says (its status is the item's)."""

    path: str  # "model.encoder.layers.0–5" for a run of calls
    kind: Optional[str]
    paths: Tuple[str, ...]  # one per call
    ops: int  # ops (non-leaf nodes) in one call
    leaves: int  # leaves it owns, in one call
    first_mismatch: Optional[int] = None  # node id where a mismatch starts inside


@dataclass(frozen=True)
class Cluster:
    """An opened module call: its items drawn inside a dashed frame."""

    path: str
    kind: Optional[str]
    count: int
    members: Tuple[Union[Item, "Cluster"], ...]


@dataclass(frozen=True)
class Collapsed:
    """A big graph as drawn: items and frames, the arrows between items,
    and which item shows each node."""

    members: Tuple[Union[Item, Cluster], ...]  # the top level
    edges: Tuple[Tuple[str, str], ...]  # (producer item, consumer item), forward
    item_of: Dict[int, str] = field(default_factory=dict)  # every node → the item that shows it
    depth: int = 0
    expanded: Tuple[str, ...] = ()  # the full paths --expand opened
    unknown: Tuple[str, ...] = ()  # --expand names that match no module
    inside_expanded: frozenset = frozenset()  # the nodes of the expanded calls, leaves they own included
    paths: Tuple[str, ...] = ()  # every module path of the graph

    def items(self) -> List[Item]:
        """Every item, depth first."""
        found: List[Item] = []

        def walk(members):
            for member in members:
                if isinstance(member, Cluster):
                    walk(member.members)
                else:
                    found.append(member)

        walk(self.members)
        return found


def _module_parts(label: str) -> Tuple[str, Optional[str]]:
    """"model.lin (Linear)" → ("model.lin", "Linear"); a bare "Linear" is its own path."""
    if label.endswith(")") and " (" in label:
        path, kind = label[:-1].split(" (", 1)
        return path, kind
    return label, label


def _node_statuses(graph, verification) -> Dict[int, str]:
    statuses = {v.node: v.status for v in verification.nodes}
    for leaf in verification.leaves:
        statuses[leaf.node] = worst([statuses.get(leaf.node, leaf.status), leaf.status])
    return statuses


class _Structure:
    """The module calls of one graph, built once; `collapse` reads it per view."""

    def __init__(self, graph):
        self.graph = graph
        self.consumers: Dict[int, List[int]] = {node.id: [] for node in graph.nodes}
        self.links: List[Tuple[int, int]] = []  # (producer, consumer)
        for node in graph.nodes:
            for operand in node.operands:
                if operand.producer is not None:
                    self.consumers[operand.producer].append(node.id)
                    self.links.append((operand.producer, node.id))
        self.neighbours: Dict[int, set] = {node.id: set() for node in graph.nodes}
        for producer, consumer in self.links:
            self.neighbours[producer].add(consumer)
            self.neighbours[consumer].add(producer)
        self.path: Dict[int, str] = {}
        self.kind: Dict[str, str] = {}
        for node in graph.nodes:
            if node.module and not node.is_leaf:
                path, kind = _module_parts(node.module)
                self.path[node.id] = path
                self.kind.setdefault(path, kind)
        self.calls = self._calls("", [n.id for n in graph.nodes if n.id in self.path])
        self._own_leaves()

    # Note [module calls from the graph]
    # A node knows the innermost module it ran in, not which call of it: a
    # module called twice (an RNN cell in a loop) labels both calls' nodes
    # alike. Calls are told apart as the connected parts of the module's
    # nodes; chained calls (one call's output feeds the next) are one part,
    # split again by walking back from the part's one exit to the previous
    # node like it (the previous call's exit), kept where every call so
    # found has the same ops.
    def _calls(self, parent: str, members: Sequence[int]) -> Tuple[Call, ...]:
        by_path: Dict[str, List[int]] = {}
        for node_id in members:
            rest = self.path[node_id][len(parent) + 1:] if parent else self.path[node_id]
            head = f"{parent}.{rest.split('.')[0]}" if parent else rest.split(".")[0]
            by_path.setdefault(head, []).append(node_id)
        calls: List[Call] = []
        for path, nodes in by_path.items():
            for part in self._parts(nodes):
                own = tuple(n for n in part if self.path[n] == path)
                inner = [n for n in part if self.path[n] != path]
                calls.append(Call(path, self.kind.get(path), tuple(part), self._calls(path, inner), own))
        return tuple(sorted(calls, key=lambda call: call.nodes[0]))

    def _parts(self, nodes: Sequence[int]) -> List[List[int]]:
        inside, parts, seen = set(nodes), [], set()
        for start in sorted(nodes):
            if start in seen:
                continue
            part, stack = [], [start]
            seen.add(start)
            while stack:
                node_id = stack.pop()
                part.append(node_id)
                for other in self.neighbours[node_id]:
                    if other in inside and other not in seen:
                        seen.add(other)
                        stack.append(other)
            parts.extend(self._repeats(sorted(part)))
        return parts

    def _repeats(self, part: List[int]) -> List[List[int]]:
        """`part` split into chained calls (Note [module calls from the graph]):
        from its one exit, the nodes back to the previous node like the exit
        are one call, and so on, kept only where every call has the same ops."""
        inside = set(part)
        producers = {n: [o.producer for o in self.graph.nodes[n].operands if o.producer in inside] for n in part}
        exits = [n for n in part if any(c not in inside for c in self.consumers[n]) or not self.consumers[n]]
        if len(exits) != 1:
            return [part]
        like = (self.graph.nodes[exits[0]].op, self.path[exits[0]])
        calls, exit_node, seen = [], exits[0], set()
        while exit_node is not None:
            call, todo, previous = {exit_node}, [exit_node], set()
            while todo:
                for producer in producers[todo.pop()]:
                    if producer in call or producer in seen:
                        continue
                    if (self.graph.nodes[producer].op, self.path[producer]) == like:
                        previous.add(producer)
                        continue
                    call.add(producer)
                    todo.append(producer)
            seen |= call
            calls.append(sorted(call))
            previous -= seen
            if len(previous) > 1:
                return [part]
            exit_node = next(iter(previous), None)
        ops = [sorted((self.graph.nodes[n].op, self.path[n]) for n in call) for call in calls]
        if len(calls) < 2 or len(seen) != len(part) or any(o != ops[0] for o in ops):
            return [part]
        return calls

    def _own_leaves(self) -> None:
        """A leaf belongs to the innermost call that holds all its consumers."""
        chain: Dict[int, Tuple[Call, ...]] = {}

        def walk(calls, above):
            for call in calls:
                for node_id in call.own:
                    chain[node_id] = above + (call,)
                walk(call.children, above + (call,))

        walk(self.calls, ())
        owner: Dict[int, Call] = {}
        for node in self.graph.nodes:
            if not node.is_leaf:
                continue
            chains = [chain.get(c, ()) for c in self.consumers[node.id]]
            if not chains or not all(chains):
                continue
            common = min(len(c) for c in chains)
            for position in range(common):
                if any(c[position] is not chains[0][position] for c in chains):
                    common = position
                    break
            if common:
                owner[node.id] = chains[0][common - 1]
        self.calls = self._with_leaves(self.calls, owner)

    def _with_leaves(self, calls, owner) -> Tuple[Call, ...]:
        result = []
        for call in calls:
            children = self._with_leaves(call.children, owner)
            leaves = tuple(n for n, c in owner.items() if c is call)
            nodes = tuple(sorted(set(call.nodes) | set(leaves) | {n for c in children for n in c.nodes}))
            result.append(Call(call.path, call.kind, nodes, children, tuple(sorted(call.own + leaves))))
        return tuple(result)

    # Note [a long chain of ops]
    # Ops outside every module are drawn one by one, which for an unrolled
    # loop of elementwise ops (10 000 of them) is a picture no one can read
    # and graphviz lays out by the minute. A chain of them, each the only
    # consumer of the next and fed by nothing else of the graph, of FOLD ops
    # or more, is one box: its steps, its ops and the worst status inside.
    def chains(self, loose: Sequence[int]) -> List[Tuple[int, ...]]:
        """`loose` in order, cut into chains (each node's one producer next, in one pass)."""
        inside = set(loose)
        nodes = self.graph.nodes

        def follows(consumer: int) -> Optional[int]:
            producers = [o.producer for o in nodes[consumer].operands if o.producer is not None]
            if len(producers) != 1 or producers[0] not in inside or nodes[consumer].is_leaf:
                return None
            producer = producers[0]
            return producer if self.consumers[producer] == [consumer] and not nodes[producer].is_leaf else None

        runs: List[Tuple[int, ...]] = []
        taken: set = {root.node for root in self.graph.roots}  # a root stays drawn as one
        runs.extend((n,) for n in loose if n in taken)
        for start in loose:
            if start in taken:
                continue
            run = [start]
            taken.add(start)
            following = follows(start)
            while following is not None and following not in taken:
                run.append(following)
                taken.add(following)
                following = follows(following)
            runs.append(tuple(run))
        return runs

    def signature(self, call: Call) -> tuple:
        """What must agree for calls to count as the same: type, op sequence, links."""
        position = {node_id: i for i, node_id in enumerate(call.nodes)}
        ops = tuple((self.graph.nodes[n].op, self.path.get(n, "")[len(call.path):]) for n in call.nodes)
        links = tuple(sorted((position[a], position[b]) for a, b in self.links if a in position and b in position))
        return call.kind, ops, links

    def linked(self, first: Call, second: Call) -> bool:
        inside = set(second.nodes)
        return any(other in inside for n in first.nodes for other in self.neighbours[n])


def _matches(path: str, name: str) -> bool:
    return path == name or path.endswith("." + name)


def _run_name(paths: Sequence[str]) -> str:
    """"model.layers.0", …, "model.layers.5" → "model.layers.0–5"."""
    if len(set(paths)) < 2:  # one call, or one module called again and again: the count says how often
        return paths[0]
    first, last = paths[0].split("."), paths[-1].split(".")
    shared = 0
    while shared < min(len(first), len(last)) - 1 and first[shared] == last[shared]:
        shared += 1
    return ".".join(first) + "–" + ".".join(last[shared:])


class _Builder:
    def __init__(self, structure: _Structure, statuses, verification, depth: int, expanded: Tuple[str, ...]):
        self.structure, self.statuses, self.depth, self.expanded = structure, statuses, depth, expanded
        self.inherited = {v.node for v in verification.nodes if v.inherited_from is not None}
        self.item_of: Dict[int, str] = {}
        self.boxes = 0
        self.runs: List[List[Tuple[int, ...]]] = []  # each run's calls' nodes, for the links between them

    def opened(self, call: Call) -> bool:
        return call.depth <= self.depth or self.touches(call)

    def touches(self, call: Call) -> bool:
        """Whether `call` is expanded, inside an expanded module, or holds one."""
        return any(call.path == p or call.path.startswith(p + ".") or p.startswith(call.path + ".")
                   for p in self.expanded)

    def members(self, calls: Sequence[Call], loose: Sequence[int], copies: Sequence[Dict[int, int]],
                renamed: Tuple[str, str] = ("", "")):
        """Items for `calls` and `loose` nodes; `copies` map these nodes onto
        their counterparts in the repeats of an enclosing run drawn once, and
        `renamed` is (its first call's path, the run's name)."""
        members: List[Union[Item, Cluster]] = []
        folded = {} if copies else {run[0]: run for run in self.structure.chains(loose) if len(run) >= FOLD}
        inside_folded = {n for run in folded.values() for n in run}
        for node_id in loose:
            if node_id in folded:
                members.append(self.chain_box(folded[node_id]))
            elif node_id not in inside_folded:
                alike = (node_id,) + tuple(copy[node_id] for copy in copies)
                members.append(self.item(f"n{node_id}", alike, len(alike)))
        for run in self.runs_of(calls):
            first = run[0]
            if len(run) > 1:
                for copy in [{n: n for n in first.nodes}, *copies]:  # the links between them, in every copy
                    self.runs.append([tuple(copy.get(n, n) for n in call.nodes) for call in run])
            identity = {n: n for n in first.nodes}
            repeats = [identity, *(dict(zip(first.nodes, other.nodes)) for other in run[1:])]
            alike = [{n: copy.get(mapping[n], mapping[n]) for n in first.nodes} for mapping in repeats
                     for copy in [{}, *copies]][1:]  # every counterpart of `first`, itself left out
            count = len(alike) + 1
            name = _run_name([call.path for call in run])
            if renamed[0] and name.startswith(renamed[0] + "."):  # layers.0–5.norm1, not layers.0.norm1
                name = renamed[1] + name[len(renamed[0]):]
            if self.opened(first):
                inner = self.members(first.children, first.own, alike, (first.path, name) if count > 1 else renamed)
                members.append(Cluster(name, first.kind, count, tuple(inner)))
                continue
            nodes = first.nodes + tuple(mapping[n] for mapping in alike for n in first.nodes)
            ops = sum(1 for n in first.nodes if not self.structure.graph.nodes[n].is_leaf)
            mismatches = sorted(n for n in nodes if self.statuses.get(n) == MISMATCH)
            starts = [n for n in mismatches if n not in self.inherited] or mismatches
            box = Box(name, first.kind, tuple(call.path for call in run), ops, len(first.nodes) - ops,
                      starts[0] if starts else None)
            self.boxes += 1
            members.append(self.item(f"b{self.boxes}", nodes, count, box))
        return members

    def chain_box(self, run: Tuple[int, ...]) -> Item:
        """A long chain of ops outside every module (Note [a long chain of ops])."""
        graph = self.structure.graph
        ops = ", ".join(sorted({graph.nodes[n].op for n in run}))
        mismatches = [n for n in run if self.statuses.get(n) == MISMATCH]
        starts = [n for n in mismatches if n not in self.inherited] or mismatches
        box = Box(f"steps {run[0] + 1}–{run[-1] + 1}", f"chain of {ops}", (), len(run), 0,
                  starts[0] if starts else None)
        self.boxes += 1
        return self.item(f"b{self.boxes}", run, 1, box)

    def item(self, name: str, nodes: Tuple[int, ...], count: int, box: Optional[Box] = None) -> Item:
        for node_id in nodes:
            self.item_of[node_id] = name
        return Item(name, nodes, worst(self.statuses.get(n) for n in nodes), count, box)

    def runs_of(self, calls: Sequence[Call]) -> List[List[Call]]:
        """`calls` in forward order, grouped into runs of identical calls,
        each feeding the next; an expanded call stands alone."""
        runs: List[List[Call]] = []
        for call in sorted(calls, key=lambda call: -call.nodes[0]):  # the root's end last
            previous = runs[-1][-1] if runs else None
            if previous is not None and not self.touches(call) and not self.touches(previous) \
                    and self.structure.signature(previous) == self.structure.signature(call) \
                    and self.structure.linked(previous, call):
                runs[-1].append(call)
            else:
                runs.append([call])
        return runs


def _build(structure: _Structure, statuses, verification, depth: int, expanded) -> Collapsed:
    builder = _Builder(structure, statuses, verification, depth, expanded)
    graph = structure.graph
    owned = {n for call in structure.calls for n in call.nodes}
    members = builder.members(structure.calls, [node.id for node in graph.nodes if node.id not in owned], [])
    run_of: Dict[int, Dict[int, int]] = {}  # node → {run: which of its calls}
    for number, run in enumerate(builder.runs):
        for position, nodes in enumerate(run):
            for node_id in nodes:
                run_of.setdefault(node_id, {})[number] = position
    edges, seen = [], set()
    for producer, consumer in structure.links:
        first, second = builder.item_of[producer], builder.item_of[consumer]
        if first == second or (first, second) in seen:
            continue
        consumer_runs = run_of.get(consumer, {})
        if any(consumer_runs.get(run, position) != position for run, position in run_of.get(producer, {}).items()):
            continue  # from one call of a run to the next: drawn once, as the count
        seen.add((first, second))
        edges.append((first, second))
    return Collapsed(tuple(members), tuple(edges), dict(builder.item_of), depth, expanded)


def collapse(graph, verification, view: View = View()) -> Optional[Collapsed]:
    """The module-level picture of `graph`, or None where `view` leaves it
    node by node (small graphs, ``--depth all``).

    Where `view.depth` is None, the deepest module level whose picture has
    at most `BUDGET` items in at most `RANKS` rows is chosen; `view.expand` opens named modules
    (``encoder.layers.0`` matches ``model.encoder.layers.0``) on top of it.
    """
    if not view.applies(graph):
        return None
    structure = _Structure(graph)
    statuses = _node_statuses(graph, verification)
    every = _all_paths(structure.calls)
    expanded = tuple(sorted({p for p in every for name in view.expand if _matches(p, name)}))
    unknown = tuple(name for name in view.expand if not any(_matches(p, name) for p in every))
    if isinstance(view.depth, int):
        collapsed = _build(structure, statuses, verification, view.depth, expanded)
    else:
        deepest = max((p.count(".") + 1 for p in every), default=0)
        collapsed = _build(structure, statuses, verification, 0, expanded)
        for depth in range(1, deepest + 1):
            candidate = _build(structure, statuses, verification, depth, expanded)
            if len(set(candidate.item_of.values())) > BUDGET or _ranks(candidate) > RANKS:
                break
            collapsed = candidate
    inside = frozenset(n for call in _all_calls(structure.calls) if call.path in expanded for n in call.nodes)
    return Collapsed(collapsed.members, collapsed.edges, collapsed.item_of, collapsed.depth, expanded, unknown,
                     inside, tuple(dict.fromkeys(every)))


def _ranks(collapsed: Collapsed) -> int:
    """The longest chain of arrows, in items: the picture's height in rows.
    An arrow back into a chain being walked (a run drawn once, fed by a
    node between two of its calls) is not followed."""
    following: Dict[str, List[str]] = {}
    for producer, consumer in collapsed.edges:
        following.setdefault(producer, []).append(consumer)
    longest: Dict[str, int] = {}

    def walk(item: str, walking: set) -> int:
        if item not in longest:
            walking.add(item)
            longest[item] = 1 + max((walk(n, walking) for n in following.get(item, ()) if n not in walking),
                                    default=0)
            walking.discard(item)
        return longest[item]

    return max((walk(item, set()) for item in set(collapsed.item_of.values())), default=0)


def _all_calls(calls) -> List[Call]:
    found: List[Call] = []
    for call in calls:
        found.append(call)
        found.extend(_all_calls(call.children))
    return found


def _all_paths(calls) -> List[str]:
    return [call.path for call in _all_calls(calls)]
