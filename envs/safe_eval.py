"""Evaluate a model-written arithmetic expression without `eval`.

The expression is parsed with `ast` and walked by hand: only integer literals, + - * /, unary minus and
parentheses are allowed, arithmetic is exact (`Fraction`), and size limits stop `9*9*9*...` style blow-ups.
"""

from __future__ import annotations

import ast
from fractions import Fraction

MAX_CHARS = 500
MAX_LITERAL = 10**12
MAX_MAGNITUDE = 10**30

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


class UnsafeExpression(ValueError):
    """The text is not a small arithmetic expression over integers."""


def evaluate(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of `text` and the integer literals it uses, in order."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise UnsafeExpression("expression missing or too long")
    cleaned = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        tree = ast.parse(cleaned, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpression(f"not an expression: {exc}") from None
    literals: list[int] = []
    return _walk(tree.body, literals), literals


def _walk(node: ast.AST, literals: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if node.value > MAX_LITERAL:
            raise UnsafeExpression("literal too large")
        literals.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, literals)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, literals), _walk(node.right, literals)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpression("division by zero")
        value = _BINARY[type(node.op)](left, right)
        if abs(value) > MAX_MAGNITUDE:
            raise UnsafeExpression("value too large")
        return value
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")
