-- Notebook chart "Sales per day": revenue and transactions per day (UTC), every sale.
SELECT date, transactions, units_sold, revenue, average_basket
FROM bi.sales_per_day
ORDER BY date
