"""The project's own tests, written as a 1.4.7 user writes them (docs/testing.rst):
``LuisyTestCase`` with ``create_testing_config`` in ``setUp``."""

import shutil
import tempfile

import pandas as pd

from luisy import Config
from luisy.testing import (
    DFMock,
    LuisyTestCase,
    SparkMock,
    create_testing_config,
    debug_run,
    get_all_dependencies,
    mock_target,
)

from shop147.spark_tasks import CopyOrders
from shop147.tasks import (
    AllNumbers,
    Everything,
    FinalTask,
    InterimTask,
    Numbers,
    RawTask,
)


class TestFinalTask(LuisyTestCase):

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp()
        create_testing_config(working_dir=self.tmpdir)

    def tearDown(self):
        shutil.rmtree(self.tmpdir)

    def test_run_from_interim(self):
        df_test = pd.DataFrame(data={'A': [1, 2], 'B': [3, 4]})
        existing_outputs = [
            (InterimTask(a=1), df_test)
        ]
        df = self.run_pipeline(FinalTask(a=1), existing_outputs=existing_outputs)
        pd.testing.assert_frame_equal(df, df_test.transpose())

    def test_run_from_raw(self):
        df_test = pd.DataFrame(data={'A': [1, 2], 'B': [3, 4]})
        df = self.run_pipeline(
            task=FinalTask(a=1),
            existing_outputs=[
                (RawTask(a=1), df_test)
            ]
        )
        pd.testing.assert_frame_equal(
            df,
            pd.DataFrame(
                data={0: [1, 3, 4], 1: [2, 4, 6]},
                index=['A', 'B', 'C']
            )
        )

    def test_return_store(self):
        df_test = pd.DataFrame(data={'A': [1, 2], 'B': [3, 4]})
        store = self.run_pipeline(FinalTask(a=3), existing_outputs=[(RawTask(a=3), df_test)],
                                  return_store=True)
        self.assertEqual(set(store), {RawTask(a=3), InterimTask(a=3), FinalTask(a=3)})
        self.assertEqual(list(store[InterimTask(a=3)]['C']), [12, 18])
        # the given input is not changed by the pipeline (reads are copies)
        self.assertEqual(list(df_test.columns), ['A', 'B'])

    def test_success_fail_missing(self):
        df_test = pd.DataFrame(data={'A': [1, 2], 'B': [3, 4]})
        self.assertSuccess(task=FinalTask(a=1), existing_outputs=[(RawTask(a=1), df_test)])
        self.assertMissing(task=FinalTask(a=1), existing_outputs=[])
        self.assertFail(task=FinalTask(a=1), existing_outputs=[(RawTask(a=1), "not a frame")])

    def test_summary(self):
        summary = self.get_execution_summary(task=FinalTask(a=1), existing_outputs=[])
        self.assertEqual(summary['upstream_missing_dependency'], {FinalTask(a=1), InterimTask(a=1)})
        self.assertEqual(summary['still_pending_ext'], {RawTask(a=1)})

    def test_concatenation(self):
        df = self.run_pipeline(AllNumbers())
        self.assertEqual(list(df['n']), [0, 1, 0, 1, 2])

    def test_wrapper_returns_its_inputs(self):
        out = self.run_pipeline(Everything(), existing_outputs=[
            (t, i) for i, t in enumerate(Everything().requires().values())])
        self.assertEqual(out, {k: i for i, k in enumerate(Everything().requires())})

    def test_config_is_the_testing_one(self):
        self.assertEqual(Config().working_dir, self.tmpdir)
        self.assertFalse(Config().download)
        self.assertFalse(Config().upload)
        self.assertEqual(Config().get_param('azure_storage_key'), '')
        self.assertIsInstance(Config().spark, SparkMock)


class TestHelpers(LuisyTestCase):

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp()
        create_testing_config(working_dir=self.tmpdir, download=False)

    def tearDown(self):
        shutil.rmtree(self.tmpdir)

    def test_get_all_dependencies(self):
        self.assertEqual(get_all_dependencies(FinalTask(a=1)),
                         {FinalTask(a=1), InterimTask(a=1), RawTask(a=1)})

    def test_mock_target_and_debug_run(self):
        store = {RawTask(a=5): pd.DataFrame({'A': [1], 'B': [1]})}
        interim, final, raw = InterimTask(a=5), FinalTask(a=5), RawTask(a=5)
        with mock_target(raw, store), mock_target(interim, store), mock_target(final, store):
            summary = debug_run([final])
            self.assertEqual(summary['completed'], {interim, final})
            self.assertTrue(final.complete())
        self.assertEqual(list(store[interim]['C']), [10])
        self.assertFalse(final.complete())  # the patch is gone: nothing on disk

    def test_auto_filename_excludes(self):
        self.assertEqual(Numbers(n=4, note='x').get_file_name(), 'Numbers_n=4')


class TestSparkWithMock(LuisyTestCase):

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp()
        create_testing_config(working_dir=self.tmpdir)
        SparkMock.data.clear()

    def tearDown(self):
        SparkMock.data.clear()
        shutil.rmtree(self.tmpdir)

    def test_delta_copy(self):
        Config().spark.data['main.sales.orders'] = {'id': [1, 2], 'qty': [5, 7]}
        task = CopyOrders()
        self.assertFalse(task.output().exists())
        summary = debug_run([task])
        self.assertEqual(summary['completed'], {task})
        self.assertTrue(task.output().exists())
        pd.testing.assert_frame_equal(task.read().toPandas(),
                                      pd.DataFrame({'id': [1, 2], 'qty': [5, 7]}))
        self.assertIsInstance(task.read(), DFMock)
        task.clean()
        self.assertFalse(task.output().exists())

    def test_missing_input_table_fails(self):
        self.assertFalse(CopyOrders().input().exists())
