"""Spark tasks in the 1.4.7 style: a Delta table in, a Delta table out."""

import luisy


@luisy.deltatable_input(catalog="main", schema="sales", table_name="orders")
@luisy.deltatable_output(catalog="main", schema="sales", table_name="orders_copy")
class CopyOrders(luisy.SparkTask):
    def run(self):
        df = self.input().read()
        self.write(df)
