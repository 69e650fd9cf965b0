"""What every env shares: the AgentEnv base class, tools, action parsing, tasks and trajectories."""

from execgym.core.actions import ParsedAction, ToolCall, parse_action
from execgym.core.env import AgentEnv
from execgym.core.errors import InfraError
from execgym.core.report import CallRecord, Criterion, FinalReport, Grade, ResetReport, StepReport, Unit
from execgym.core.spaces import UnicodeText
from execgym.core.tasks import Task, TaskSet, load_taskset
from execgym.core.tools import Tool, ToolError, ToolOutput

__all__ = [
    "AgentEnv",
    "CallRecord",
    "Criterion",
    "FinalReport",
    "Grade",
    "InfraError",
    "ParsedAction",
    "ResetReport",
    "StepReport",
    "Task",
    "TaskSet",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolOutput",
    "UnicodeText",
    "Unit",
    "load_taskset",
    "parse_action",
]
