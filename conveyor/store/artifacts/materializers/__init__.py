"""Materializers: one module per kind of value, and the default registry that chooses among them."""

from conveyor.store.artifacts.materializers.base import Materializer, MaterializerRegistry

_M = "conveyor.store.artifacts.materializers"


def default_registry() -> MaterializerRegistry:
    """A registry with the built-in materializers, most specific first, pickle last."""
    reg = MaterializerRegistry()
    reg.register("pandas.arrow", f"{_M}.pandas_arrow:PandasArrowMaterializer", ["pandas.core.frame.DataFrame", "pandas.DataFrame"])
    reg.register("arrow.ipc", f"{_M}.arrow_table:ArrowTableMaterializer", ["pyarrow.lib.Table"])
    reg.register("numpy.npy", f"{_M}.numpy_npy:NumpyMaterializer", ["numpy.ndarray", "numpy.generic"])
    reg.register("model", f"{_M}.model:ModelMaterializer",
                 ["sklearn.base.BaseEstimator", "xgboost.sklearn.XGBModel", "xgboost.core.Booster",
                  "lightgbm.sklearn.LGBMModel", "lightgbm.basic.Booster"])
    reg.register("json", f"{_M}.json_value:JsonMaterializer",
                 ["builtins.dict", "builtins.list", "builtins.str", "builtins.int", "builtins.float",
                  "builtins.bool", "builtins.NoneType"])
    reg.register("bytes", f"{_M}.bytes_value:BytesMaterializer", ["builtins.bytes", "builtins.bytearray"])
    reg.register("path", f"{_M}.path_value:PathMaterializer", ["pathlib.PurePath"])
    reg.register("pickle", f"{_M}.pickle_fallback:PickleMaterializer", ["builtins.object"])
    reg.fallback = "pickle"
    return reg


registry = default_registry()

__all__ = ["Materializer", "MaterializerRegistry", "default_registry", "registry"]
