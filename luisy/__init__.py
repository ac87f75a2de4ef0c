"""luisy: luigi pipelines with managed output locations and code-change reruns
(compatible with luisy 1.4.7 pipelines and working directories)."""

from luigi import (
    BoolParameter,
    ChoiceParameter,
    DateHourParameter,
    DateIntervalParameter,
    DateMinuteParameter,
    DateParameter,
    DateSecondParameter,
    DictParameter,
    EnumListParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    ListParameter,
    MonthParameter,
    NumericalParameter,
    OptionalBoolParameter,
    OptionalChoiceParameter,
    OptionalDictParameter,
    OptionalFloatParameter,
    OptionalIntParameter,
    OptionalListParameter,
    OptionalParameter,
    OptionalPathParameter,
    OptionalStrParameter,
    OptionalTupleParameter,
    Parameter,
    PathParameter,
    StrParameter,
    TaskParameter,
    TimeDeltaParameter,
    TupleParameter,
    YearParameter,
)

from luisy.config import Config, activate_download, set_working_dir
from luisy.decorators import (
    auto_filename,
    csv_output,
    feather_output,
    final,
    hdf_output,
    inherits,
    interim,
    json_output,
    make_directory_output,
    parquetdir_output,
    pickle_output,
    project_name,
    raw,
    requires,
    xlsx_output,
)
from luisy.run import BuildResult
from luisy.spark import (
    SparkTask,
    azure_blob_storage_input,
    azure_blob_storage_output,
    deltatable_input,
    deltatable_output,
)
from luisy.tasks import ConcatenationTask, ExternalTask, Task, WrapperTask

# The layers above the tasks, imported last: luisy.cloud and luisy.visualize fill the task
# hooks (Task.download/upload/visualize, reads after activate_download()).
import luisy.cloud  # noqa: E402,F401
import luisy.visualize  # noqa: E402,F401
from luisy.runner import run_tasks as build  # noqa: E402

__version__ = "2.0.0.dev0"

__all__ = [
    "Task", "ExternalTask", "WrapperTask", "ConcatenationTask", "SparkTask",
    "Config", "set_working_dir", "activate_download", "build", "BuildResult",
    "raw", "interim", "final", "requires", "inherits", "auto_filename", "project_name",
    "pickle_output", "json_output", "csv_output", "xlsx_output", "hdf_output",
    "feather_output", "parquetdir_output", "make_directory_output",
    "deltatable_output", "deltatable_input", "azure_blob_storage_output",
    "azure_blob_storage_input",
    "Parameter", "StrParameter", "IntParameter", "FloatParameter", "NumericalParameter",
    "BoolParameter", "OptionalBoolParameter", "ListParameter", "TupleParameter",
    "DictParameter", "DateParameter", "MonthParameter", "YearParameter",
    "DateHourParameter", "DateMinuteParameter", "DateSecondParameter",
    "DateIntervalParameter", "TimeDeltaParameter", "ChoiceParameter", "EnumParameter",
    "EnumListParameter", "TaskParameter", "PathParameter", "OptionalParameter",
    "OptionalStrParameter", "OptionalIntParameter", "OptionalFloatParameter",
    "OptionalListParameter", "OptionalTupleParameter", "OptionalDictParameter",
    "OptionalChoiceParameter", "OptionalPathParameter",
]
