"""Graph problems. Where several answers are right (orderings, paths), the checker accepts any of them."""

from __future__ import annotations

import heapq
from collections import deque

from posttrain.envs.api import Env, Malformed, Problem, ask, parse_int, parse_ints
from posttrain.envs.registry import register_env


def dijkstra(n: int, edges: list[list[int]], source: int) -> list[float]:
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for u, v, w in edges:
        adjacency[u].append((v, w))
        adjacency[v].append((u, w))
    dist = [float("inf")] * n
    dist[source] = 0
    heap = [(0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in adjacency[u]:
            if d + w < dist[v]:
                dist[v] = d + w
                heapq.heappush(heap, (d + w, v))
    return dist


@register_env(source="builtin")
class ShortestPath(Env):
    """Shortest 0 → n−1 distance in a connected weighted graph of n = d + 3 nodes."""

    name = "shortest_path"
    tags = ("graphs",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = difficulty + 3
        edges = {(rng.randrange(v), v) for v in range(1, n)}  # a random spanning tree keeps it connected
        for _ in range(n // 2):
            u, v = sorted(rng.sample(range(n), 2))
            edges.add((u, v))
        weighted = [[u, v, rng.randint(1, 9)] for u, v in sorted(edges)]
        text = " ".join(f"{u}-{v}:{w}" for u, v, w in weighted)
        prompt = ask(f"Edges {text}. Shortest distance 0 to {n - 1}?")
        distance = int(dijkstra(n, weighted, 0)[n - 1])
        return self.problem(seed, difficulty, prompt, str(distance), n=n, edges=weighted)

    def check(self, problem: Problem, answer: str) -> bool:
        params = problem.params
        return parse_int(answer) == dijkstra(params["n"], params["edges"], 0)[params["n"] - 1]


@register_env(source="builtin")
class TopoSort(Env):
    """Order n = d + 3 shuffled labels so that every `a<b` constraint holds; any valid order is correct."""

    name = "toposort"
    tags = ("graphs",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = difficulty + 3
        order = list(range(n))
        rng.shuffle(order)
        pairs = {(order[i], order[i + 1]) for i in range(n - 1) if rng.random() < 0.5}
        while len(pairs) < n:
            i, j = sorted(rng.sample(range(n), 2))
            pairs.add((order[i], order[j]))
        edges = sorted(pairs)
        prompt = ask(f"Order 0..{n - 1} so that {' '.join(f'{a}<{b}' for a, b in edges)}.")
        problem = self.problem(seed, difficulty, prompt, None, n=n, edges=[list(e) for e in edges])
        problem.reference = self._kahn(n, edges)
        return problem

    @staticmethod
    def _kahn(n: int, edges: list) -> str:
        indegree = [0] * n
        for _, b in edges:
            indegree[b] += 1
        ready = [v for v in range(n) if indegree[v] == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            v = heapq.heappop(ready)
            out.append(v)
            for a, b in edges:
                if a == v:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        heapq.heappush(ready, b)
        return " ".join(map(str, out))

    def check(self, problem: Problem, answer: str) -> bool:
        order = parse_ints(answer)
        if sorted(order) != list(range(problem.params["n"])):
            raise Malformed("not a permutation of the labels")
        position = {v: i for i, v in enumerate(order)}
        return all(position[a] < position[b] for a, b in problem.params["edges"])


_MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


def _bfs(grid: list[str], start: tuple[int, int]) -> dict[tuple[int, int], int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in _MOVES.values():
            nr, nc = r + dr, c + dc
            if 0 <= nr < len(grid) and 0 <= nc < len(grid[0]) and grid[nr][nc] != "#" and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return dist


@register_env(source="builtin")
class Maze(Env):
    """A shortest U/D/L/R path from S to G in a (3 + d//2)-square grid; any shortest path is correct."""

    name = "maze"
    tags = ("graphs", "search")

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        size = 3 + difficulty // 2
        while True:
            cells = [["#" if rng.random() < 0.3 else "." for _ in range(size)] for _ in range(size)]
            start, goal = rng.sample([(r, c) for r in range(size) for c in range(size)], 2)
            cells[start[0]][start[1]], cells[goal[0]][goal[1]] = "S", "G"
            grid = ["".join(row) for row in cells]
            if goal in _bfs(grid, start):
                break
        prompt = ask(f"Maze {'/'.join(grid)} (# wall). Shortest U/D/L/R moves from S to G?")
        problem = self.problem(seed, difficulty, prompt, None, grid=grid, start=list(start), goal=list(goal))
        problem.reference = self._path(grid, start, goal)
        return problem

    @staticmethod
    def _path(grid: list[str], start: tuple[int, int], goal: tuple[int, int]) -> str:
        """Walk back from the goal along decreasing BFS distance."""
        dist = _bfs(grid, start)
        moves, here = [], goal
        while here != start:
            for name, (dr, dc) in _MOVES.items():
                prev = (here[0] - dr, here[1] - dc)
                if dist.get(prev) == dist[here] - 1:
                    moves.append(name)
                    here = prev
                    break
        return "".join(reversed(moves))

    def check(self, problem: Problem, answer: str) -> bool:
        moves = answer.replace(" ", "").replace(",", "").upper()
        if not moves or set(moves) - set(_MOVES) or len(moves) > 10_000:
            raise Malformed("expected a string of U/D/L/R")
        grid, (r, c) = problem.params["grid"], problem.params["start"]
        for move in moves:
            r, c = r + _MOVES[move][0], c + _MOVES[move][1]
            if not (0 <= r < len(grid) and 0 <= c < len(grid[0])) or grid[r][c] == "#":
                return False
        shortest = _bfs(grid, tuple(problem.params["start"]))[tuple(problem.params["goal"])]
        return [r, c] == problem.params["goal"] and len(moves) == shortest
