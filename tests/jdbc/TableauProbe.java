import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/**
 * What Tableau Desktop does over pgjdbc: list the tables and views, read the columns of the
 * sales table, run a custom-SQL query wrapped in a subquery with period, region and product filters,
 * then a query on a table (the top products of the day × region × product rollup).
 *
 * <p>Arguments: JDBC URL, user, start and end (SQL timestamps, UTC), regions and products
 * (comma-separated). Output: one tab-separated line per table, column and result row.
 *
 * <p>With {@code --try} after the URL and user, it instead runs each statement read from
 * standard input (one per line) and prints {@code OK} or {@code ERROR <SQLSTATE>} for each.
 */
public final class TableauProbe {
    private TableauProbe() {}

    public static void main(String[] args) throws SQLException {
        String url = args[0];
        String user = args[1];
        if (args.length == 3 && "--try".equals(args[2])) {
            tryStatements(url, user);
            return;
        }
        try (Connection conn = DriverManager.getConnection(url, user, "")) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("DRIVER\t" + meta.getDriverName() + "\t" + meta.getDriverVersion());
            String[] kinds = {"TABLE", "VIEW"};
            try (ResultSet tables = meta.getTables(null, "public", "%", kinds)) {
                while (tables.next()) {
                    System.out.println("TABLE\t" + tables.getString("TABLE_NAME") + "\t"
                            + tables.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, "public", "sales", "%")) {
                while (columns.next()) {
                    System.out.println("COLUMN\t" + columns.getString("COLUMN_NAME") + "\t"
                            + columns.getString("TYPE_NAME") + "\t" + columns.getInt("DATA_TYPE"));
                }
            }
            String query = "SELECT DATE_TRUNC('DAY', \"Custom SQL Query\".\"ts\")"
                    + " AS \"tdy:ts:ok\",\n"
                    + "  SUM(\"Custom SQL Query\".\"amount\") AS \"sum:amount:ok\",\n"
                    + "  COUNT(1) AS \"cnt:_id:ok\"\n"
                    + "FROM (\n  SELECT * FROM sales\n) \"Custom SQL Query\"\n"
                    + "WHERE ((\"Custom SQL Query\".\"ts\" >= (TIMESTAMP '" + args[2] + "'))"
                    + " AND (\"Custom SQL Query\".\"ts\" < (TIMESTAMP '" + args[3] + "'))"
                    + " AND (\"Custom SQL Query\".\"region\" IN (" + quoted(args[4]) + "))"
                    + " AND (\"Custom SQL Query\".\"product\" IN (" + quoted(args[5]) + ")))\n"
                    + "GROUP BY 1\nORDER BY 1";
            try (Statement statement = conn.createStatement();
                    ResultSet rows = statement.executeQuery(query)) {
                while (rows.next()) {
                    System.out.println("ROW\t" + rows.getTimestamp(1).toInstant() + "\t"
                            + cents(rows.getBigDecimal(2)) + "\t" + rows.getLong(3));
                }
            }
            String top = "SELECT \"ventes_par_jour\".\"product\" AS \"product\",\n"
                    + "  SUM(\"ventes_par_jour\".\"amount\") AS \"sum:amount:ok\"\n"
                    + "FROM \"public\".\"ventes_par_jour\" \"ventes_par_jour\"\n"
                    + "WHERE (\"ventes_par_jour\".\"region\" IN (" + quoted(args[4]) + "))\n"
                    + "GROUP BY 1\nORDER BY 2 DESC, 1\nLIMIT 10";
            try (Statement statement = conn.createStatement();
                    ResultSet rows = statement.executeQuery(top)) {
                while (rows.next()) {
                    System.out.println(
                            "TOP\t" + rows.getString(1) + "\t" + cents(rows.getBigDecimal(2)));
                }
            }
        }
    }

    private static void tryStatements(String url, String user) throws SQLException {
        java.util.Scanner in = new java.util.Scanner(System.in, "UTF-8");
        try (Connection conn = DriverManager.getConnection(url, user, "")) {
            conn.setAutoCommit(true);
            while (in.hasNextLine()) {
                String sql = in.nextLine();
                if (sql.isBlank()) {
                    continue;
                }
                try (Statement statement = conn.createStatement()) {
                    statement.execute(sql);
                    System.out.println("OK\t" + sql);
                } catch (SQLException e) {
                    System.out.println("ERROR " + e.getSQLState() + "\t" + sql);
                }
            }
        }
    }

    private static String cents(java.math.BigDecimal amount) {
        return amount.setScale(2, java.math.RoundingMode.HALF_EVEN).toPlainString();
    }

    private static String quoted(String commaSeparated) {
        StringBuilder out = new StringBuilder();
        for (String value : commaSeparated.split(",")) {
            if (out.length() > 0) {
                out.append(", ");
            }
            out.append('\'').append(value.replace("'", "''")).append('\'');
        }
        return out.toString();
    }
}
